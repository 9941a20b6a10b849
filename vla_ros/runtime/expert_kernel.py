"""The action tokens' forward in every denoising step, for any family.

The layers are the family's (`Family.suffix_layers`, e.g. `Qwen3Layer` with q/k/v and gate/up
fused into one matmul each); this file supplies their attention: the new suffix K/V are written
into their fixed slots of the preallocated buffers and attention reads the buffer views
[0, kv_len) (the cached prefix, then the suffix). The same code runs eagerly and inside a CUDA
graph. Move the model (device/dtype) before wrapping it in a Policy, not after: the fused tensors
are made once per model.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from vla_ros.runtime.kv_buffers import KVBuffers


# The CPU flash-attention op also returns the log-sum-exp needed to merge two attention parts.
_flash_cpu = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def _attention_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Unmasked attention with its log-sum-exp: q (B, H, L, hd), k/v (B, H, S, hd) ->
    out (B, H, L, hd), lse (B, H, L) float32. The CPU flash kernel returns both in one op."""
    if _flash_cpu is not None and q.device.type == "cpu":
        out, lse = _flash_cpu(q, k, v, 0.0, False, attn_mask=None, scale=scale)
        return out, lse
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * scale
    lse = torch.logsumexp(scores, dim=-1)
    return torch.matmul(torch.exp(scores - lse[..., None]).to(v.dtype), v), lse


class ExpertKernel:
    def __init__(self, layers: list[Any], norm: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.layers = layers
        self.norm = norm
        first = layers[0]
        self.num_heads, self.kv_heads, self.head_dim = first.num_heads, first.kv_heads, first.head_dim

    def flops_per_token(self, kv_len: int) -> int:
        """Multiply-adds x 2 per action token for one expert forward attending to kv_len keys."""
        return sum(layer.flops_per_token(kv_len) for layer in self.layers)

    def split_attention(self, q: torch.Tensor, k_buf: torch.Tensor, v_buf: torch.Tensor, prefix_len: int,
                        offset: int, samples: int, scale: float) -> torch.Tensor:
        """Exact attention for S samples sharing one prefix, without a mask and without copying
        the prefix: q (1, H, S*T, hd) -> (1, S*T, H*hd).

        Two fused attentions: all samples' queries (grouped per KV head) against the shared
        prefix, and each sample against its own T suffix slots; merged through their
        log-sum-exps, which is exactly one softmax over [prefix | own suffix]:
        o = o_s + sigmoid(lse_p - lse_s) * (o_p - o_s). Few, large ops: on a shared CPU every
        extra parallel op is a thread barrier."""
        nh, nkv, hd = self.num_heads, self.kv_heads, self.head_dim
        g = nh // nkv
        n = q.shape[2]
        t = n // samples
        qg = q.view(nkv, g, samples, t, hd).transpose(1, 2).contiguous()  # (KVH, S, g, T, hd)
        kp, vp = k_buf[:, :, :prefix_len], v_buf[:, :, :prefix_len]  # (1, KVH, P, hd) views
        ks = k_buf[0, :, offset:offset + n].view(nkv, samples, t, hd).transpose(0, 1)  # (S, KVH, T, hd) views
        vs = v_buf[0, :, offset:offset + n].view(nkv, samples, t, hd).transpose(0, 1)
        qs = qg.view(nkv, samples, g * t, hd).transpose(0, 1)  # (S, KVH, gT, hd)
        o_p, lse_p = _attention_lse(qg.view(1, nkv, samples * g * t, hd), kp, vp, scale)
        o_s, lse_s = _attention_lse(qs, ks, vs, scale)
        o_p = o_p.view(nkv, samples, g * t, hd).transpose(0, 1)  # (S, KVH, gT, hd)
        lse_p = lse_p.view(nkv, samples, g * t, 1).transpose(0, 1)
        w = torch.sigmoid(lse_p.float() - lse_s.float().unsqueeze(-1)).to(o_s.dtype)
        o = torch.lerp(o_s, o_p.to(o_s.dtype), w)  # (S, KVH, gT, hd)
        return o.view(samples, nkv, g, t, hd).permute(0, 3, 1, 2, 4).reshape(1, n, nh * hd)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, kv: KVBuffers,
                suffix_offset: int, kv_len: int, mask: torch.Tensor | None,
                split: tuple[int, int] | None = None) -> torch.Tensor:
        """h (1, N, D) action-token embeddings of all samples; cos/sin (1, N, 1, hd);
        mask (1, 1, N, kv_len) bool, True = may attend, or None = all of [0, kv_len);
        split = (prefix_len, samples) selects `split_attention` instead (CPU, several samples).
        Returns the final-normed hidden (1, N, D)."""
        n = h.shape[1]
        nh, nkv = self.num_heads, self.kv_heads
        for i, layer in enumerate(self.layers):
            q, k, v = layer.qkv(h, cos, sin)  # (1, H, N, hd), (1, KVH, N, hd)
            kb, vb = kv.keys[i], kv.values[i]
            kb[:, :, suffix_offset:suffix_offset + n].copy_(k)  # fixed slots, overwritten each step
            vb[:, :, suffix_offset:suffix_offset + n].copy_(v)
            if split is not None:
                o = self.split_attention(q, kb, vb, split[0], suffix_offset, split[1], layer.scaling)
            else:
                o = F.scaled_dot_product_attention(q, kb[:, :, :kv_len], vb[:, :, :kv_len], attn_mask=mask,
                                                   scale=layer.scaling, enable_gqa=nkv != nh)
                o = o.transpose(1, 2).reshape(1, n, nh * self.head_dim)
            h = layer.finish(h, o)
        return self.norm(h)
