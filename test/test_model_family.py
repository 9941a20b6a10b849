"""A second model family in one file: the seam (vla_ros/model/family.py) is all a family needs.

`toy_chunk` is deliberately unlike kv_expert: no VLM and no text (images pooled to 4 tokens
each, the ego history as 16 tokens, two Qwen3 layers over the prefix with bidirectional
attention), causal attention among its action tokens, and an action chunk in physical units
(joint angles and a gripper opening) instead of a driving path. It is registered here, in the
test suite, and never shipped.
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Qwen3Config
from transformers.models.qwen3.modeling_qwen3 import Qwen3DecoderLayer

from vla_ros.model import build_preset, load_checkpoint, save_checkpoint
from vla_ros.model.action_space import ActionStats
from vla_ros.model.build import build_model
from vla_ros.model.config import ImageConfig, ModelConfigError, VLAConfig
from vla_ros.model.families import UnknownFamilyError, family_class, family_names, register_family
from vla_ros.model.family import DecodedActions, ImageEmbedding, PrefillResult
from vla_ros.model.presets import preset_config
from vla_ros.model.qwen3_layer import Qwen3Layer, rms_norm
from vla_ros.model.text_tokenizer import TextTokenizer, build_byte_tokenizer
from vla_ros.runtime import Policy, PolicyInputError
from vla_ros.runtime.tools.synthetic import synthetic_inputs

D, LAYERS, HEADS, KV_HEADS, HD, T, A = 32, 2, 2, 1, 16, 5, 3
SCALE = torch.tensor([0.5, 0.5, 0.04], dtype=torch.float64)  # per-dimension physical scale


def _rope(positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (10000 ** (torch.arange(0, HD, 2, dtype=torch.float32, device=positions.device) / HD))
    ang = positions.float()[:, None] * inv
    emb = torch.cat([ang, ang], -1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


@register_family("toy_chunk")
class ToyChunk(nn.Module):
    def __init__(self, config: VLAConfig, stats: ActionStats | None = None) -> None:
        super().__init__()
        self.config = config
        self.stats = stats or ActionStats()
        qc = Qwen3Config(hidden_size=D, intermediate_size=2 * D, num_attention_heads=HEADS,
                         num_key_value_heads=KV_HEADS, head_dim=HD, num_hidden_layers=LAYERS, vocab_size=8)
        self.image_in = nn.Linear(3, D)
        self.history_in = nn.Linear(3, D)
        self.prefix = nn.ModuleList(Qwen3DecoderLayer(qc, i) for i in range(LAYERS))
        self.suffix = nn.ModuleList(Qwen3DecoderLayer(qc, i) for i in range(LAYERS))
        self.norm = nn.Parameter(torch.ones(D))
        self.action_in, self.time_in, self.action_out = nn.Linear(A, D), nn.Linear(1, D), nn.Linear(D, A)
        self._qc = qc

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # prefix
    def cache_shape(self) -> tuple[int, int, int]:
        return LAYERS, KV_HEADS, HD

    @property
    def image_size_hw(self) -> tuple[int, int]:
        return 32, 32

    def encode_images(self, images: np.ndarray, device: torch.device, dtype: torch.dtype) -> list[ImageEmbedding]:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 255.0
        tokens = self.image_in(F.adaptive_avg_pool2d(x, (2, 2)).flatten(2).transpose(1, 2).to(dtype))  # (N, 4, D)
        return [ImageEmbedding(tokens=t, deepstack=(), grid_thw=(1, 2, 2)) for t in tokens]

    def prefix_plan(self, embeds: list[ImageEmbedding], history_xyz: np.ndarray, tokenizer: object) -> SimpleNamespace:
        hist = torch.as_tensor(history_xyz, dtype=self.norm.dtype, device=self.norm.device)
        h = torch.cat([*(e.tokens for e in embeds), self.history_in(hist)])[None]
        return SimpleNamespace(h=h, length=h.shape[1])

    def prefill(self, plan: SimpleNamespace, embeds: list[ImageEmbedding], cache: object) -> PrefillResult:
        h = plan.h
        cos, sin = _rope(torch.arange(plan.length, device=h.device), h.dtype)
        for i, layer in enumerate(Qwen3Layer.stack(self.prefix, self._qc)):
            q, k, v = layer.qkv(h, cos[None, :, None], sin[None, :, None])
            cache.update(k, v, i)  # the runtime's buffers
            o = F.scaled_dot_product_attention(q, k, v, scale=layer.scaling, enable_gqa=True)  # bidirectional
            h = layer.finish(h, o.transpose(1, 2).flatten(2))
        return PrefillResult(logits=None, next_position=plan.length)

    def decode_token(self, token: int, length: int, position: int, cache: object) -> torch.Tensor:
        raise NotImplementedError

    def text_logit_mask(self, tokenizer: object) -> None:
        return None

    # suffix
    @property
    def action_shape(self) -> tuple[int, int]:
        return T, A

    def time_terms(self, times: torch.Tensor) -> torch.Tensor:
        return self.time_in(times[:, None].to(self.norm.dtype))

    def embed_suffix(self, x: torch.Tensor, time_term: torch.Tensor) -> torch.Tensor:
        return self.action_in(x) + time_term

    def suffix_layers(self) -> list[Qwen3Layer]:
        return Qwen3Layer.stack(self.suffix, self._qc, fused=True)

    def suffix_norm(self, h: torch.Tensor) -> torch.Tensor:
        return rms_norm(h, self.norm, 1e-6)

    def suffix_rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return _rope(positions, dtype)

    def suffix_mask(self, t: int, device: torch.device) -> torch.Tensor:
        return torch.ones(t, t, dtype=torch.bool, device=device).tril()  # causal action tokens

    def decode_suffix(self, h: torch.Tensor) -> torch.Tensor:
        return self.action_out(h)

    # output
    def decode_actions(self, actions: torch.Tensor, history_xyz: torch.Tensor, history_rot: torch.Tensor) -> DecodedActions:
        return DecodedActions(actions=actions.double() * SCALE, names=("shoulder", "elbow", "gripper"),
                              units=("rad", "rad", "m"))


def toy_config() -> VLAConfig:
    base = preset_config("random:tiny")
    return dataclasses.replace(base, architecture="toy_chunk", name="toy",
                               image=ImageConfig(num_cameras=2, num_frames=2, nominal_height=32, nominal_width=32))


def toy_policy(seed: int = 0) -> Policy:
    cfg = toy_config()
    tok = TextTokenizer(build_byte_tokenizer(cfg.prompt, cfg.history.bins), cfg.prompt, cfg.history.bins)
    return Policy(build_model(cfg, seed=seed), tok, max_samples=4)


def tick(i: int = 0):
    return synthetic_inputs(i, cameras=2, frames=2, height=32, width=32)


def test_the_registry_selects_the_family_named_in_config_json():
    assert family_class("toy_chunk") is ToyChunk and family_class("kv_expert").__name__ == "KVExpertVLA"
    assert {"kv_expert", "toy_chunk"} <= set(family_names())
    assert isinstance(build_model(toy_config()), ToyChunk)
    with pytest.raises(UnknownFamilyError, match="mystery"):
        family_class("mystery")
    with pytest.raises(ModelConfigError, match="architecture"):
        VLAConfig.from_dict({**toy_config().to_dict(), "architecture": "mystery"})


def test_a_second_family_runs_in_the_runtime_and_outputs_an_action_chunk():
    policy = toy_policy()
    out = policy.act(tick(), samples=3, noise_scale=0.0)
    assert out.xyz is None and out.rot is None and not out.is_trajectory
    assert out.actions.shape == (3, T, A) and out.raw_actions.shape == (3, T, A)
    assert out.action_names == ("shoulder", "elbow", "gripper") and out.action_units == ("rad", "rad", "m")
    np.testing.assert_allclose(out.actions, out.raw_actions * SCALE.numpy(), rtol=1e-6)
    assert np.isfinite(out.actions).all() and np.abs(out.raw_actions).max() > 0
    np.testing.assert_allclose(out.actions[0], out.actions[2])  # zero noise: the same chunk per sample
    assert out.timings.denoise_ms is not None and out.timings.reasoning_ms is None
    with pytest.raises(PolicyInputError, match="no text decoder"):
        policy.reason(policy.prefill(tick(), reasoning_budget=4), max_tokens=2)


def test_the_family_attention_pattern_holds_in_the_cached_runtime():
    """Causal action tokens: a change to the last action token cannot reach the first one's
    velocity but reaches its own; every action token sees the prefix (a new frame moves all)."""
    policy = toy_policy()
    ctx = policy.prefill(tick(0), reasoning_budget=0)
    x = torch.randn(2, T, A, generator=torch.Generator().manual_seed(1))
    y = x.clone()
    y[:, -1] += 1.0
    vx, vy = policy.velocity(ctx, x, 0.3), policy.velocity(ctx, y, 0.3)
    assert torch.equal(vx[:, :-1], vy[:, :-1]) and (vx[:, -1] - vy[:, -1]).abs().max() > 1e-3
    ctx2 = policy.prefill(tick(5), reasoning_budget=0)
    assert (policy.velocity(ctx2, x, 0.3)[:, 0] - vx[:, 0]).abs().max() > 1e-4
    # several samples in one batch: each equals its own single-sample run
    both = policy.denoise(ctx2, noise=x, steps=3)
    one = policy.denoise(ctx2, noise=x[1:], steps=3)
    torch.testing.assert_close(both[1:], one, atol=1e-5, rtol=0)


def test_the_family_saves_and_loads_by_its_architecture_name(tmp_path):
    policy = toy_policy(seed=3)
    save_checkpoint(policy.model, policy.tokenizer, tmp_path / "toy")
    model, tok = load_checkpoint(tmp_path / "toy")
    assert isinstance(model, ToyChunk)
    loaded = Policy(model, tok)
    a = policy.act(tick(), noise_scale=0.0)
    b = loaded.act(tick(), noise_scale=0.0)
    np.testing.assert_array_equal(a.actions, b.actions)


def test_kv_expert_is_still_a_trajectory_family():
    model, tok = build_preset("random:tiny")
    out = Policy(model, tok).act(synthetic_inputs(0, height=96, width=224), noise_scale=0.0)
    assert out.is_trajectory and out.xyz.shape == (1, 64, 3)
    assert out.action_names == ("acceleration", "curvature") and out.action_units == ("m/s^2", "1/m")


def test_the_family_mask_holds_in_the_cuda_graph_layout():
    """The CUDA-graph layout (suffix slots at the buffer's capacity, unused prefix slots masked)
    with the family's causal suffix mask, run eagerly on the CPU, equals the eager layout."""
    policy = toy_policy()
    ctx = policy.prefill(tick(0), reasoning_budget=8)
    noise = torch.randn(3, T, A, generator=torch.Generator().manual_seed(4))
    eager = policy.denoise(ctx, noise=noise, steps=3)
    be = policy.backend
    sched, terms = be.schedule(3)
    with torch.inference_mode():
        cos, sin, mask, off, kv_len = be._suffix_tables(ctx, 3, graph=True)
        assert off == be.kv.capacity > ctx.length and mask is not None
        x = noise
        for i, dt in enumerate(sched.dts):
            x = x + dt * be._velocity(x, terms[i], cos, sin, mask, off, kv_len)
    torch.testing.assert_close(x, eager, atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA graph needs a CUDA GPU (none here)")
def test_a_second_family_runs_in_one_cuda_graph():
    cfg = toy_config()
    tok = TextTokenizer(build_byte_tokenizer(cfg.prompt, cfg.history.bins), cfg.prompt, cfg.history.bins)
    model = build_model(cfg, seed=0, device="cuda")
    eager, graph = Policy(model, tok, cuda_graph=False), Policy(model, tok, cuda_graph=True)
    noise = torch.randn(2, T, A, generator=torch.Generator().manual_seed(6)).cuda()
    a = eager.denoise(eager.prefill(tick()), noise=noise, steps=4)
    ctx = graph.prefill(tick())
    b, c = graph.denoise(ctx, noise=noise, steps=4), graph.denoise(ctx, noise=noise, steps=4)
    assert float((a - b).abs().max()) <= 1e-4 and torch.equal(b, c)
    assert [g.replays for g in graph.backend._graphs.values()] == [2]
