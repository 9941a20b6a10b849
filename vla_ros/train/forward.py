"""The batched training forward of a kv_expert: one joint pass over [prompt | reasoning | actions].

Per sample the sequence is

    prompt (L tokens, same layout for every sample) | reasoning + <|cot_end|> (right-padded to R)
    | 64 noisy action tokens (expert stream)

and per layer the VLM layer projects the prefix and the expert layer the action tokens; the
prefix attends causally (exactly as the runtime's prefill and reasoning decode do; padding sits
at the end, so no real token sees it) and the action tokens attend bidirectionally to each other
and to the prefix up to the end of the reasoning (Alpamayo-R1: the expert is conditioned on the
cache that holds the reasoning). When a sample's reasoning is dropped (`use_reasoning` False) its
action tokens see the prompt only and sit at the positions right after it: the runtime's
no-reasoning tick. Rotary positions match the runtime: M-RoPE for the prompt, then one position
per reasoning token, then next_position + arange(64) for the action tokens.

Losses: flow matching (MSE between predicted and target velocity of the normalized actions) and
the language-model cross-entropy on the reasoning tokens (including <|cot_end|>).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vla_ros.model.families.kv_expert import KVExpertVLA
from vla_ros.model.prompt import PromptBuilder
from vla_ros.model.qwen3_layer import Qwen3Layer
from vla_ros.model.text_tokenizer import TextTokenizer
from vla_ros.model.vision_batched import image_features


@dataclass
class Batch:
    """B samples of V*F images each. S = L + R prefix tokens, T waypoints."""

    pixel_values: torch.Tensor  # (B*V*F*patches, C*Tp*P*P)
    image_grid: torch.Tensor  # (B*V*F, 3)
    input_ids: torch.Tensor  # (B, S) prompt, then reasoning (padded)
    prompt_positions: torch.Tensor  # (3, 1, L) M-RoPE positions of the prompt
    prompt_len: int  # L
    reasoning_len: torch.Tensor  # (B,) real reasoning tokens (with <|cot_end|>)
    use_reasoning: torch.Tensor  # (B,) bool: the action tokens see the reasoning
    actions: torch.Tensor  # (B, T, 2) normalized targets


def make_batch(model: KVExpertVLA, tokenizer: TextTokenizer, prompts: PromptBuilder, images: np.ndarray,
               hist_xyz: np.ndarray, reasoning: list[str], actions_norm: torch.Tensor, use_reasoning: torch.Tensor,
               device: str | torch.device = "cpu") -> Batch:
    """images uint8 (B, V, F, H, W, 3), hist_xyz (B, N, 3), reasoning B strings, actions (B, T, 2).
    The batch lands on `device`; the images go there as uint8 and are resized and patched there
    (on a GPU that moves 4x fewer bytes and takes the preprocessing, most of a batch's CPU time, off the CPU)."""
    b, v, f, h, w, _ = images.shape
    pixels, grid = model.image_preprocessor(images.reshape(b * v * f, h, w, 3), device=device)
    per_image = int(grid[0, 1] * grid[0, 2]) // model.config.image.merge_size ** 2
    prompt_ids = [prompts.build(v * f, per_image, model.history_tokenizer.encode(x)) for x in hist_xyz]
    ids = tokenizer.ids
    texts = [tokenizer.encode(s) + [ids.reasoning_end] for s in reasoning]
    r = max(len(t) for t in texts)
    pad = ids.im_end  # never attended to by a real token, never a target
    rows = [torch.cat([p.input_ids[0], torch.tensor(t + [pad] * (r - len(t)), dtype=torch.long)]) for p, t in zip(prompt_ids, texts)]
    first = prompt_ids[0]
    vm = model.vlm.model
    positions, _ = vm.get_rope_index(first.input_ids, first.mm_token_type_ids, image_grid_thw=grid[: v * f])
    return Batch(pixel_values=pixels, image_grid=grid.to(device), input_ids=torch.stack(rows).to(device),
                 prompt_positions=positions.to(device), prompt_len=first.length,
                 reasoning_len=torch.tensor([len(t) for t in texts], device=device),
                 use_reasoning=use_reasoning.to(device), actions=actions_norm.to(device))


def sample_flow_time(model: KVExpertVLA, n: int, generator: torch.Generator) -> torch.Tensor:
    """(n,) flow times drawn with the density of the model's inference grid (uniform or cosine),
    in its direction's convention."""
    u = torch.rand(n, generator=generator)
    if model.config.flow.grid == "cosine":
        u = (1.0 - torch.cos(math.pi * u)) / 2.0
    return u


def noisy_actions(model: KVExpertVLA, x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight-line path between noise and data -> (x_t, target velocity dx_t/dt), both (B, T, A)."""
    tt = t.view(-1, 1, 1)
    if model.config.flow.direction == "noise_to_data":  # t=0 noise, t=1 data
        return (1 - tt) * noise + tt * x, x - noise
    return tt * noise + (1 - tt) * x, noise - x  # data_to_noise: t=1 noise, t=0 data


@dataclass
class Losses:
    flow: torch.Tensor
    lm: torch.Tensor
    lm_accuracy: float  # next-token accuracy on the reasoning tokens


def joint_forward(model: KVExpertVLA, batch: Batch, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy actions x_t (B, T, A) at flow times t (B,) -> (velocity (B, T, A), reasoning logits
    (B, R, V): the logit at prompt end + j predicts reasoning token j)."""
    vm = model.vlm.model
    lm, expert = vm.language_model, model.expert
    ids = batch.input_ids
    b, s = ids.shape
    L = batch.prompt_len
    # Prefix embeddings with the vision tokens scattered in.
    embeds = vm.get_input_embeddings()(ids)
    feats = image_features(vm, batch.pixel_values, batch.image_grid)
    image_embeds = torch.cat(list(feats.pooler_output), dim=0).to(embeds.dtype)
    vis_mask = ids == model.vlm_config.image_token_id  # (B, S)
    embeds = embeds.masked_scatter(vis_mask[..., None].expand_as(embeds), image_embeds)
    deepstack = [torch.cat(list(d), dim=0) for d in feats.deepstack_features]
    next_pos = int(batch.prompt_positions.max()) + 1
    dev = ids.device
    text_pos = next_pos + torch.arange(s - L, device=dev)
    pos_p = torch.cat([batch.prompt_positions[:, 0], text_pos.expand(3, -1)], dim=1)[:, None].expand(3, b, s)
    cos_p, sin_p = lm.rotary_emb(embeds, pos_p)
    ha = model.action_in_proj(x_t, t)
    T = ha.shape[1]
    seen = L + batch.reasoning_len * batch.use_reasoning  # (B,) prefix tokens the actions attend to
    pos_a = (next_pos + (seen - L))[:, None] + torch.arange(T, device=dev)[None]  # (B, T)
    cos_a, sin_a = expert.rotary_emb(ha, pos_a[None].expand(3, b, T))
    keys = torch.arange(s + T, device=dev)
    allowed = (keys[None, :] < seen[:, None]) | (keys[None, :] >= s)  # (B, S+T)
    mask_a = allowed[:, None, None, :].expand(b, 1, T, s + T)
    cos_p, sin_p, cos_a, sin_a = cos_p[:, :, None], sin_p[:, :, None], cos_a[:, :, None], sin_a[:, :, None]
    hp = embeds
    # The runtime's layer (unfused: gradients flow); one joint attention per layer over both streams.
    layers = zip(Qwen3Layer.stack(lm.layers, lm.config), Qwen3Layer.stack(expert.layers, expert.config))
    for i, (vl, el) in enumerate(layers):
        qp, kp, vp = vl.qkv(hp, cos_p, sin_p)
        qa, ka, va = el.qkv(ha, cos_a, sin_a)
        op = F.scaled_dot_product_attention(qp, kp, vp, is_causal=True, scale=vl.scaling, enable_gqa=True)
        oa = F.scaled_dot_product_attention(qa, torch.cat([kp, ka], 2), torch.cat([vp, va], 2), attn_mask=mask_a,
                                            scale=el.scaling, enable_gqa=True)
        hp, ha = vl.finish(hp, op.transpose(1, 2).flatten(2)), el.finish(ha, oa.transpose(1, 2).flatten(2))
        if i < len(deepstack):
            hp = lm._deepstack_process(hp, vis_mask, deepstack[i])
    velocity = model.action_out_proj(model.suffix_norm(ha))
    # The logit at position j predicts token j+1; reasoning tokens sit at [L, S).
    return velocity, model.vlm.lm_head(lm.norm(hp[:, L - 1:s - 1])).float()


def training_losses(model: KVExpertVLA, batch: Batch, t: torch.Tensor, noise: torch.Tensor) -> Losses:
    """t (B,) flow times, noise (B, T, A)."""
    x_t, target = noisy_actions(model, batch.actions, noise, t)
    velocity, logits = joint_forward(model, batch, x_t, t)
    flow = F.mse_loss(velocity.float(), target.float())
    ids, L = batch.input_ids, batch.prompt_len
    b, s = ids.shape
    targets = ids[:, L:]
    valid = torch.arange(s - L, device=ids.device)[None] < batch.reasoning_len[:, None]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none").view(b, -1)
    lm_loss = (ce * valid).sum() / valid.sum()
    acc = float(((logits.argmax(-1) == targets) & valid).sum() / valid.sum())
    return Losses(flow=flow, lm=lm_loss, lm_accuracy=acc)
