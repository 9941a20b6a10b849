"""The Qwen3 decoder layer, written once for every fast path: the runtime's denoising kernel, the
ONNX graphs (prefill and denoise step) and the training forward.

A layer is cut where attention happens, so each caller runs attention the way its setting needs
(suffix K/V written into preallocated buffers and read with the cached prefix; two streams in one
joint softmax while training; a plain matmul + softmax that exports cleanly):

    q, k, v = layer.qkv(h, cos, sin)   pre-norm, q/k/v projection (one fused matmul when fused),
                                       per-head q/k RMSNorm, rotary
    h = layer.finish(h, o)             o_proj + residual, post-attention norm, SwiGLU MLP + residual
    h = layer(h, cos, sin, attend)     both halves around attend(q, k, v) -> o

Shapes: h (B, N, D); cos/sin (B or 1, N, 1, hd); q (B, H, N, hd); k, v (B, KVH, N, hd);
o (B, N, H*hd). The weights are the transformers module's own (`Qwen3VLTextDecoderLayer` or any
layer with the same attribute names); `fuse_qkv` re-points them at views of one fused tensor.

The slow reference (`vla_ros.model.joint_attention`) deliberately does not use this file: it is
assembled from transformers' own functions, so a wrong mask, position or norm here shows up as a
difference there.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Qwen RMSNorm: normalize in float32, cast back, then scale (as transformers). One fused op,
    except while exporting to ONNX (opset 17 has no RMSNormalization)."""
    if torch.onnx.is_in_onnx_export():
        xf = x.float()
        y = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
        return y if weight is None else weight * y
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    y = F.rms_norm(x.float(), (x.shape[-1],), None, eps).to(x.dtype)
    return y if weight is None else weight * y


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _fuse(linears: list[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Concatenate the weights (and biases) along the output dim and make each Linear's
    parameters views into the fused tensors (same values, one copy in memory, same state dict)."""
    with torch.no_grad():
        weight = torch.cat([lin.weight for lin in linears], dim=0)
        has_bias = linears[0].bias is not None
        bias = torch.cat([lin.bias for lin in linears], dim=0) if has_bias else None
        row = 0
        for lin in linears:
            n = lin.weight.shape[0]
            lin.weight = nn.Parameter(weight[row:row + n], requires_grad=False)
            if has_bias:
                lin.bias = nn.Parameter(bias[row:row + n], requires_grad=False)
            row += n
    return weight, bias


def fuse_qkv(layer: nn.Module) -> None:
    """Inference only: q/k/v and gate/up become one matmul each (once per module; the fused
    tensors are kept on the module so every Qwen3Layer over it shares them)."""
    if getattr(layer, "_vla_ros_fused", None) is None:
        a, m = layer.self_attn, layer.mlp
        layer._vla_ros_fused = (_fuse([a.q_proj, a.k_proj, a.v_proj]), _fuse([m.gate_proj, m.up_proj])[0])


class Qwen3Layer:
    def __init__(self, module: nn.Module, num_heads: int, kv_heads: int, head_dim: int, eps: float,
                 fused: bool = False) -> None:
        """fused=True (inference): one matmul for q/k/v and one for gate/up, frozen weights.
        fused=False (training, export): the module's own parameters, gradients flow."""
        self.module = module
        self.attn = module.self_attn
        self.mlp = module.mlp
        self.num_heads, self.kv_heads, self.head_dim, self.eps = num_heads, kv_heads, head_dim, eps
        self.scaling = float(self.attn.scaling)
        if fused:
            fuse_qkv(module)
        parts = getattr(module, "_vla_ros_fused", None) if fused else None
        self._qkv, self._gate_up = (parts[0], parts[1]) if parts is not None else (None, None)
        # q_norm and k_norm (per-head RMSNorms over hd) applied to q and k together: one norm over
        # (H + KVH) heads, then one multiply by the stacked per-head weights. Built once when
        # the weights are frozen (inference); per call otherwise (training: gradients flow).
        self._qk_norm = self._qk_norm_weight().detach() if parts is not None else None

    @classmethod
    def stack(cls, modules: nn.ModuleList, config: object, fused: bool = False) -> list["Qwen3Layer"]:
        """The layers of a transformers Qwen3(-VL) text model; fused=True for inference."""
        return [cls(m, config.num_attention_heads, config.num_key_value_heads, config.head_dim, config.rms_norm_eps,
                    fused) for m in modules]

    def _qk_norm_weight(self) -> torch.Tensor:
        return torch.cat([self.attn.q_norm.weight.expand(self.num_heads, -1),
                          self.attn.k_norm.weight.expand(self.kv_heads, -1)])

    def qkv_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The q/k/v projection as one (out, in) weight (concatenated per call when not fused:
        differentiable, and constant-folded into one initializer by the ONNX export)."""
        if self._qkv is not None:
            return self._qkv
        a = self.attn
        b = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]) if a.q_proj.bias is not None else None
        return torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]), b

    def qkv(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        nh, nkv, hd = self.num_heads, self.kv_heads, self.head_dim
        x = rms_norm(h, self.module.input_layernorm.weight, self.eps)
        w, b = self.qkv_weights()
        qkv = F.linear(x, w, b).unflatten(-1, (nh + 2 * nkv, hd))  # (B, N, H + 2 KVH, hd)
        qk_w = self._qk_norm if self._qk_norm is not None else self._qk_norm_weight()
        qk = rms_norm(qkv[:, :, :nh + nkv], None, self.eps) * qk_w
        qk = qk * cos + rotate_half(qk) * sin
        q = qk[:, :, :nh].transpose(1, 2)
        k = qk[:, :, nh:].transpose(1, 2)
        v = qkv[:, :, nh + nkv:].transpose(1, 2)
        return q, k, v

    def finish(self, h: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        # The projections' functions, not their Module calls: the same ops with less Python per
        # token (reasoning runs this once per layer per token).
        o_proj, down = self.attn.o_proj, self.mlp.down_proj
        h = h + F.linear(o, o_proj.weight, o_proj.bias)
        x = rms_norm(h, self.module.post_attention_layernorm.weight, self.eps)
        if self._gate_up is not None:
            gate, up = F.linear(x, self._gate_up).chunk(2, dim=-1)
        else:
            gate, up = self.mlp.gate_proj(x), self.mlp.up_proj(x)
        return h + F.linear(self.mlp.act_fn(gate) * up, down.weight, down.bias)

    def __call__(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attend: Attend) -> torch.Tensor:
        return self.finish(h, attend(*self.qkv(h, cos, sin)))

    def flops_per_token(self, kv_len: int) -> int:
        """Multiply-adds x 2 per token of one forward attending to kv_len keys."""
        a, m = self.attn, self.mlp
        n = sum(lin.weight.numel() for lin in (a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj,
                                               m.down_proj))
        return 2 * (n + 2 * self.num_heads * self.head_dim * kv_len)


def attention_matmul(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                     bias: torch.Tensor | None) -> torch.Tensor:
    """Plain attention for export: q (..., N, hd), k/v (..., M, hd), additive float32 bias
    broadcastable to (..., N, M) -> (..., N, hd). Scores and softmax in float32 (fp16 scores
    overflow), as SDPA does."""
    s = torch.matmul(q, k.transpose(-1, -2)).float() * scale
    if bias is not None:
        s = s + bias
    return torch.matmul(torch.softmax(s, dim=-1).to(v.dtype), v)
