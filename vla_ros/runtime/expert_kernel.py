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

from vla_ros.runtime.kv_buffers import KVBuffers, SampleKV


class ExpertKernel:
    def __init__(self, layers: list[Any], norm: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.layers = layers
        self.norm = norm
        first = layers[0]
        self.num_heads, self.kv_heads, self.head_dim = first.num_heads, first.kv_heads, first.head_dim

    def flops_per_token(self, kv_len: int) -> int:
        """Multiply-adds x 2 per action token for one expert forward attending to kv_len keys."""
        return sum(layer.flops_per_token(kv_len) for layer in self.layers)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, kv: KVBuffers,
                suffix_offset: int, kv_len: int, mask: torch.Tensor | None,
                per_sample: SampleKV | None = None) -> torch.Tensor:
        """h (1, N, D) action-token embeddings of all samples; cos/sin (1, N, 1, hd);
        mask (1, 1, N, kv_len) bool, True = may attend, or None = all of [0, kv_len);
        per_sample: several samples' K/V as `SampleKV` (CPU, eager) instead of `kv`'s suffix
        slots: one batched attention per layer over [prefix | own tokens], no mask (on a shared CPU
        every extra op is a thread barrier). Returns the final-normed hidden (1, N, D)."""
        n = h.shape[1]
        nh, nkv = self.num_heads, self.kv_heads
        for i, layer in enumerate(self.layers):
            q, k, v = layer.qkv(h, cos, sin)  # (1, H, N, hd), (1, KVH, N, hd)
            if per_sample is not None:
                kb, vb = per_sample.write(i, k, v)
                qs = q[0].unflatten(1, (per_sample.samples, n // per_sample.samples)).transpose(0, 1)  # (S, H, T, hd)
                o = F.scaled_dot_product_attention(qs, kb, vb, scale=layer.scaling, enable_gqa=nkv != nh)
                o = o.transpose(1, 2).reshape(1, n, nh * self.head_dim)  # (S, T, H, hd): sample-major tokens
            else:
                kb, vb = kv.keys[i], kv.values[i]
                kb[:, :, suffix_offset:suffix_offset + n].copy_(k)  # fixed slots, overwritten each step
                vb[:, :, suffix_offset:suffix_offset + n].copy_(v)
                o = F.scaled_dot_product_attention(q, kb[:, :, :kv_len], vb[:, :, :kv_len], attn_mask=mask,
                                                   scale=layer.scaling, enable_gqa=nkv != nh)
                o = o.transpose(1, 2).reshape(1, n, nh * self.head_dim)
            h = layer.finish(h, o)
        return self.norm(h)
