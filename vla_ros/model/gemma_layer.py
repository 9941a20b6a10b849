"""The Gemma decoder layer as pi0 / pi0.5 use it (LeRobot's `policies/pi_gemma.py`), cut where
attention happens like `Qwen3Layer`, so the prefill, the cached-prefix state token and the
runtime's denoising kernel (`vla_ros.runtime.expert_kernel`) all run the same code:

    q, k, v = layer.qkv(h, cos, sin)   pre-norm, q/k/v projection (no biases), rotate-half rotary
    h = layer.finish(h, o)             o_proj (gated residual), post-attention norm,
                                       GeLU-tanh gated MLP (gated residual)

Norms are Gemma's zero-centred RMSNorm, `n * (1 + weight)` computed in float32, or, with an
adaptive condition (pi0.5's action expert: the flow time), `n * (1 + scale) + shift` with
`scale, shift, gate = dense(cond)` and the gate multiplying the branch in the residual. The
condition is read from `cond()` at call time, so one layer object serves every flow step.

Module attribute names (`self_attn.q_proj`, `mlp.gate_proj`, `input_layernorm.weight` or
`.dense`) are LeRobot's, so a LeRobot state dict loads by name.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vla_ros.model.qwen3_layer import fuse_qkv

RMS_EPS = 1e-6


class GemmaNorm(nn.Module):
    """Zero-centred RMSNorm (`weight`), or adaptive (`dense`: cond -> scale, shift, gate)."""

    def __init__(self, width: int, adaptive: bool) -> None:
        super().__init__()
        if adaptive:
            self.dense = nn.Linear(width, 3 * width)
        else:
            self.weight = nn.Parameter(torch.zeros(width))
        self.adaptive = adaptive

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> normalized x, and the residual gate (None without a condition)."""
        n = F.rms_norm(x.float(), (x.shape[-1],), None, RMS_EPS)  # x * rsqrt(mean(x^2) + eps), one op
        if not self.adaptive:
            return (n * (1.0 + self.weight.float())).to(x.dtype), None
        if cond is None:
            raise ValueError("an adaptive norm needs its condition")
        scale, shift, gate = self.dense(cond).float().chunk(3, dim=-1)
        return (n * (1.0 + scale) + shift).to(x.dtype), gate.to(x.dtype)


class GemmaDecoderLayer(nn.Module):
    def __init__(self, width: int, mlp_dim: int, num_heads: int, kv_heads: int, head_dim: int,
                 adaptive: bool = False) -> None:
        super().__init__()
        self.self_attn = nn.Module()
        self.self_attn.q_proj = nn.Linear(width, num_heads * head_dim, bias=False)
        self.self_attn.k_proj = nn.Linear(width, kv_heads * head_dim, bias=False)
        self.self_attn.v_proj = nn.Linear(width, kv_heads * head_dim, bias=False)
        self.self_attn.o_proj = nn.Linear(num_heads * head_dim, width, bias=False)
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(width, mlp_dim, bias=False)
        self.mlp.up_proj = nn.Linear(width, mlp_dim, bias=False)
        self.mlp.down_proj = nn.Linear(mlp_dim, width, bias=False)
        self.input_layernorm = GemmaNorm(width, adaptive)
        self.post_attention_layernorm = GemmaNorm(width, adaptive)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def gemma_rope(positions: torch.Tensor, head_dim: int, dtype: torch.dtype,
               theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) positions -> cos, sin (N, head_dim), angles in float32 (as transformers' Gemma)."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    ang = positions.float()[:, None] * inv[None]
    emb = torch.cat([ang, ang], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


class GemmaLayer:
    """One `GemmaDecoderLayer` split around attention (the object the runtime's kernel drives).
    `cond` returns the adaptive-norm condition of the current call (None for plain norms).
    Inference only: q/k/v and gate/up run as one matmul each (`fuse_qkv`: the module's weights
    become views of the fused tensors, same values, same state dict)."""

    def __init__(self, module: GemmaDecoderLayer, num_heads: int, kv_heads: int, head_dim: int,
                 cond: Callable[[], torch.Tensor | None] = lambda: None) -> None:
        self.module = module
        self.attn, self.mlp = module.self_attn, module.mlp
        self.num_heads, self.kv_heads, self.head_dim = num_heads, kv_heads, head_dim
        self.scaling = float(head_dim) ** -0.5
        self.cond = cond
        fuse_qkv(module)
        (self._qkv, _), self._gate_up = module._vla_ros_fused
        self._gate = None  # the attention branch's residual gate, from qkv to finish

    def qkv(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """h (B, N, D); cos/sin broadcastable to (B, N, H, hd) -> q (B, H, N, hd), k/v (B, KVH, N, hd)."""
        nh, nkv = self.num_heads, self.kv_heads
        x, self._gate = self.module.input_layernorm(h, self.cond())
        qkv = F.linear(x, self._qkv).unflatten(-1, (nh + 2 * nkv, self.head_dim))  # (B, N, H + 2 KVH, hd)
        qk = qkv[:, :, :nh + nkv]
        qk = qk * cos + rotate_half(qk) * sin  # q and k rotated together
        return qk[:, :, :nh].transpose(1, 2), qk[:, :, nh:].transpose(1, 2), qkv[:, :, nh + nkv:].transpose(1, 2)

    def finish(self, h: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """o (B, N, H*hd) attention output -> the layer's output hidden (B, N, D)."""
        a = self.attn.o_proj(o)
        h = h + (a if self._gate is None else a * self._gate)
        x, gate = self.module.post_attention_layernorm(h, self.cond())
        g, u = F.linear(x, self._gate_up).chunk(2, dim=-1)
        m = self.mlp.down_proj(F.gelu(g, approximate="tanh") * u)
        return h + (m if gate is None else m * gate)

    def flops_per_token(self, kv_len: int) -> int:
        a, m = self.attn, self.mlp
        n = sum(lin.weight.numel() for lin in (a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj,
                                               m.down_proj))
        return 2 * (n + 2 * self.num_heads * self.head_dim * kv_len)
