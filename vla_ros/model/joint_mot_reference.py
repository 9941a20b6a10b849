"""The uncached joint forward of a `joint_mot` model: every stream through its own expert at once.

Per layer, each stream's tokens (the prefix, each middle expert's tokens, the action expert's
tokens: pi0's state token and the actions) are projected to Q/K/V by its own expert's layer, ONE
attention runs over the concatenated sequence with the block mask (`c = cumsum(block flags)`, query
i sees key j when c[j] <= c[i]), and each stream applies its own o_proj, residual, norm and MLP
(docs/pi0.md section 8). Everything is recomputed for every velocity: this is how joint attention
reads when written straight from its definition (LeRobot's training forward), and the slow reference
that the runtime's cut (every stream but the actions cached once, only the actions per step) must
reproduce, and the baseline `vla-ros bench runtime` times it against. The layers are the family's
own (their internals are checked against LeRobot's recorded velocities); what this file does
differently is the schedule and the attention, written out with an explicit mask.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vla_ros.model.gemma_layer import gemma_rope


def joint_velocity(model, tokenizer, images: np.ndarray, state: np.ndarray, task: str, x: torch.Tensor,
                   t: float) -> torch.Tensor:
    """images (V, H, W, 3) uint8 or float in [0, 1], raw state (state_dim,), task; noisy actions
    x (1, T, A) at flow time t -> velocity (1, T, A)."""
    spec = model.spec
    p = model.model.action_in_proj.weight
    embeds = model.encode_images(images, p.device, p.dtype)
    state_n = model.normalize_state(torch.as_tensor(state, dtype=torch.float32))
    ids = torch.tensor(tokenizer.encode_prompt(model.prompt(task, state_n), spec.tokenizer_max_length), device=p.device)
    lm = model._vlm.language_model
    prefix = torch.cat([*(e.tokens for e in embeds), lm.embed_tokens(ids) * torch.tensor(spec.vlm.width ** 0.5, dtype=p.dtype)])
    tt = model.time_terms(torch.tensor([t], device=p.device))[0]
    actions = model.embed_suffix(x.to(p.device, p.dtype), tt)[0]  # pi0.5: also sets this step's norm condition
    streams = [(model._layers(lm, spec.vlm, cond=False), prefix, [0] * len(prefix))]
    for e, size in zip(getattr(model.model, "middle_experts", ()), spec.middle_experts):
        streams.append((model._layers(e.model, size, cond=False), e.queries, [1] + [0] * (len(e.queries) - 1)))
    expert = model._layers(model._expert, spec.expert, cond=spec.variant == "pi05")
    if spec.variant == "pi0":
        s = model.model.state_proj(F.pad(state_n.to(p.device, p.dtype), (0, spec.max_state_dim - spec.state_dim)))
        streams.append((expert, torch.cat([s[None], actions]), [1, 1] + [0] * (len(actions) - 1)))
    else:
        streams.append((expert, actions, [1] + [0] * (len(actions) - 1)))
    c = torch.tensor([f for _, _, fl in streams for f in fl], device=p.device).cumsum(0)
    bias = torch.where(c[None, :] <= c[:, None], 0.0, float("-inf"))
    cos, sin = gemma_rope(torch.arange(len(c), device=p.device), spec.vlm.head_dim, p.dtype)
    hs = [h[None] for _, h, _ in streams]
    bounds = np.cumsum([0] + [len(fl) for _, _, fl in streams]).tolist()
    spans = list(zip(bounds[:-1], bounds[1:]))
    for i in range(spec.vlm.depth):
        qkv = [layers[i].qkv(h, cos[None, a:b, None], sin[None, a:b, None]) for (layers, _, _), h, (a, b) in zip(streams, hs, spans)]
        q, k, v = (torch.cat([part[j] for part in qkv], dim=2) for j in range(3))
        g = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
        scores = (q @ k.transpose(-1, -2)).float() * spec.vlm.head_dim ** -0.5 + bias
        o = (torch.softmax(scores, dim=-1).to(v.dtype) @ v).transpose(1, 2).flatten(2)
        hs = [layers[i].finish(h, o[:, a:b]) for (layers, _, _), h, (a, b) in zip(streams, hs, spans)]
    return model.decode_suffix(model.suffix_norm(hs[-1][:, -spec.chunk_size:]))
