"""Export-friendly torch modules for the `joint_mot` family's graphs (pi0 / pi0.5, `vla-ros export`).

Every graph runs the family's own code (`vla_ros.model.families.joint_mot`: its vision tower and
projector, `prefill_streams`, and the denoise-step seam `time_terms` / `embed_suffix` /
`suffix_layers` / `suffix_rope` / `suffix_norm` / `decode_suffix`, whose layers are
`vla_ros.model.gemma_layer.GemmaLayer`); this file supplies only what is shaped for a graph: the
attention (grouped KV heads without SDPA's enable_gqa, which the TorchScript exporter cannot
convert), a K/V cache that concatenates instead of writing into preallocated buffers, and an
ONNX symbolic for `aten::rms_norm` (Gemma's norm; no opset below 23 has the operator).

    vision.onnx        pixels (B, 3, R, R) f32 in [-1, 1]           -> image_embeds (B, R^2/p^2, W)
    prefill.onnx       image_embeds (1, Ni, W), input_ids (Nl,) int64,
                       [pi0: state (state_dim,) f32, normalized]    -> prefix_keys / prefix_values
                                                                       (NL, KVH, P, hd); P = Ni + Nl
                                                                       (+ middle experts' tokens, + 1 for pi0)
    denoise_step.onnx  x (S, T, A) f32, t (1,) f32, dt (1,) f32, prefix_keys / prefix_values,
                       suffix_positions (T,) int64                  -> velocity (S, T, A) f32,
                                                                       x_next = x + dt * velocity

Every prefix token is real (the family leaves padding out of the cache), so no prefix mask is
needed. pi0's state token and the middle experts are streams of the prefill, as in the torch
runtime; pi0.5's adaptive-norm condition (the flow time through the time MLP) is computed inside
the denoise step from `t`.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.onnx import symbolic_helper

from vla_ros.runtime.export.onnx_graphs import cached_step_attention, grouped_attention

_OPSETS = range(14, 21)  # the TorchScript exporter's range (`vla-ros export --opset`)


@symbolic_helper.parse_args("v", "v", "v", "f")
def _rms_norm_symbolic(g: Any, x: Any, shape: Any, weight: Any, eps: float) -> Any:
    """aten::rms_norm(x, normalized_shape, weight, eps) -> x / sqrt(mean(x^2) + eps) [* weight]."""
    dims = len(symbolic_helper._unpack_list(shape)) if symbolic_helper._is_packed_list(shape) \
        else len(symbolic_helper._parse_arg(shape, "is"))
    axes = list(range(-dims, 0))
    sq = g.op("Mul", x, x)
    if g.opset >= 18:  # ReduceMean's axes became an input
        mean = g.op("ReduceMean", sq, g.op("Constant", value_t=torch.tensor(axes, dtype=torch.long)), keepdims_i=1)
    else:
        mean = g.op("ReduceMean", sq, axes_i=axes, keepdims_i=1)
    y = g.op("Div", x, g.op("Sqrt", g.op("Add", mean, g.op("Constant", value_t=torch.tensor(eps, dtype=torch.float32)))))
    return y if symbolic_helper._is_none(weight) else g.op("Mul", y, weight)


def register_symbolics() -> None:
    """Called before exporting (idempotent): the TorchScript exporter has no rms_norm."""
    for opset in _OPSETS:
        torch.onnx.register_custom_op_symbolic("aten::rms_norm", _rms_norm_symbolic, opset)


class _ConcatCache:
    """The `cache.update(k, v, layer)` the family's prefill writes through, for a graph: each
    layer's K/V (1, KVH, n, hd) appended by concatenation; returns everything cached so far."""

    def __init__(self, layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * layers
        self.values: list[torch.Tensor | None] = [None] * layers

    def update(self, k: torch.Tensor, v: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        old_k, old_v = self.keys[i], self.values[i]
        self.keys[i] = k if old_k is None else torch.cat([old_k, k], dim=2)
        self.values[i] = v if old_v is None else torch.cat([old_v, v], dim=2)
        return self.keys[i], self.values[i]  # type: ignore[return-value]


class JointMoTVisionGraph(nn.Module):
    """pixels (B, 3, R, R) in [-1, 1] -> image_embeds (B, tokens, W): SigLIP + projector."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.image_tokens(pixels.to(self.model.model.action_in_proj.weight.dtype))


class JointMoTPrefillGraph(nn.Module):
    """Every stream but the action tokens into the K/V cache, through the family's prefill_streams."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.pi0 = model.spec.variant == "pi0"

    def forward(self, image_embeds: torch.Tensor, input_ids: torch.Tensor,
                state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        cache = _ConcatCache(self.model.spec.vlm.depth)
        self.model.prefill_streams(image_embeds, input_ids, state if self.pi0 else None, cache,
                                   attend=grouped_attention)
        return torch.stack([k[0] for k in cache.keys]), torch.stack([v[0] for v in cache.values])


class JointMoTDenoiseStepGraph(nn.Module):
    """One Euler step of the action tokens for S samples against the cached prefix, through the
    family's suffix seam (the same calls as the torch backend's denoise loop)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.layers = model.suffix_layers()

    def forward(self, x: torch.Tensor, t: torch.Tensor, dt: torch.Tensor, prefix_keys: torch.Tensor,
                prefix_values: torch.Tensor, suffix_positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        dtype = m.model.action_in_proj.weight.dtype
        h = m.embed_suffix(x.to(dtype), m.time_terms(t)[0])  # pi0.5: also sets the norms' time condition
        cos, sin = m.suffix_rope(suffix_positions, dtype)
        cos, sin = cos[None, :, None], sin[None, :, None]  # (1, T, 1, hd): over samples and heads
        for i, layer in enumerate(self.layers):
            q, k, v = layer.qkv(h, cos, sin)
            h = layer.finish(h, cached_step_attention(q, k, v, prefix_keys[i], prefix_values[i], layer.scaling))
        vel = m.decode_suffix(m.suffix_norm(h)).float()
        return vel, x + dt * vel
