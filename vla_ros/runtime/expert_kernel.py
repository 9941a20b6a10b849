"""The lean expert forward used by every denoising step.

The expert's q/k/v and gate/up projections are fused into one matmul each. The module's own
parameters are re-pointed at views of the fused tensors, so no weight is stored twice and the
state dict is unchanged. Per layer:

    h  += o_proj(attn(rope(q_norm(q)), [prefix K | suffix K], [prefix V | suffix V], mask))
    h  += down(silu(gate) * up)(post_norm(h))

The new suffix K/V are written into their fixed slots of the preallocated buffers; the attention
reads the buffer views [0, kv_len). The same code runs eagerly and inside a CUDA graph.
Move the model (device/dtype) before wrapping it in a Policy, not after: the fused tensors are
made once per model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Qwen RMSNorm in one fused op: normalize in float32, cast back, then scale (as transformers)."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    y = F.rms_norm(x.float(), (x.shape[-1],), None, eps).to(x.dtype)
    return y if weight is None else weight * y


def _fuse(linears: list[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Concatenate the weights (and biases) along the output dim and make each Linear's
    parameters views into the fused tensors (same values, one copy in memory)."""
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


class ExpertKernel:
    def __init__(self, expert: nn.Module) -> None:
        cfg = expert.config
        self.num_heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        self.layers = list(expert.layers)
        self.norm = expert.norm
        fused = getattr(expert, "_vla_ros_fused", None)
        if fused is None:  # fuse once per model, even if several policies wrap it
            fused = ([_fuse([l.self_attn.q_proj, l.self_attn.k_proj, l.self_attn.v_proj]) for l in self.layers],
                     [_fuse([l.mlp.gate_proj, l.mlp.up_proj])[0] for l in self.layers])
            expert._vla_ros_fused = fused
        self.qkv: list[tuple[torch.Tensor, torch.Tensor | None]] = fused[0]
        self.gate_up: list[torch.Tensor] = fused[1]
        self.q_size = self.num_heads * self.head_dim
        self.kv_size = self.kv_heads * self.head_dim
        self.eps = cfg.rms_norm_eps
        # q_norm and k_norm (per-head RMSNorms) applied to q and k together: one norm over
        # (H + KVH) heads, then one multiply by the stacked per-head weights.
        self.qk_norm_weight = [torch.cat([layer.self_attn.q_norm.weight.detach().expand(self.num_heads, -1),
                                          layer.self_attn.k_norm.weight.detach().expand(self.kv_heads, -1)])
                               for layer in self.layers]

    def flops_per_token(self, kv_len: int) -> int:
        """Multiply-adds x 2 per action token for one expert forward attending to kv_len keys."""
        total = 0
        for (w, _), gu, layer in zip(self.qkv, self.gate_up, self.layers):
            total += w.numel() + gu.numel() + layer.self_attn.o_proj.weight.numel() + layer.mlp.down_proj.weight.numel()
            total += 2 * self.num_heads * self.head_dim * kv_len  # q.K and p.V
        return 2 * total

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
        """h (1, N, D) action-token embeddings of all samples; cos/sin (1, 1, N, hd);
        mask (1, 1, N, kv_len) bool, True = may attend, or None = all of [0, kv_len);
        split = (prefix_len, samples) selects `split_attention` instead (CPU, several samples).
        Returns the final-normed hidden (1, N, D)."""
        n = h.shape[1]
        hd, nh, nkv = self.head_dim, self.num_heads, self.kv_heads
        cos, sin = cos.transpose(1, 2), sin.transpose(1, 2)  # (1, N, 1, hd): broadcast over heads
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            residual = h
            x = _rms_norm(h, layer.input_layernorm.weight, self.eps)
            w, b = self.qkv[i]
            qkv = F.linear(x, w, b).unflatten(-1, (nh + 2 * nkv, hd))  # (1, N, H + 2 KVH, hd)
            qk = _rms_norm(qkv[:, :, :nh + nkv], None, self.eps) * self.qk_norm_weight[i]
            qk = qk * cos + _rotate_half(qk) * sin
            q = qk[:, :, :nh].transpose(1, 2)  # (1, H, N, hd)
            k = qk[:, :, nh:].transpose(1, 2)  # (1, KVH, N, hd)
            v = qkv[:, :, nh + nkv:].transpose(1, 2)
            kb, vb = kv.keys[i], kv.values[i]
            kb[:, :, suffix_offset:suffix_offset + n].copy_(k)  # fixed slots, overwritten each step
            vb[:, :, suffix_offset:suffix_offset + n].copy_(v)
            if split is not None:
                o = self.split_attention(q, kb, vb, split[0], suffix_offset, split[1], attn.scaling)
            else:
                o = F.scaled_dot_product_attention(q, kb[:, :, :kv_len], vb[:, :, :kv_len], attn_mask=mask,
                                                   scale=attn.scaling, enable_gqa=nkv != nh)
                o = o.transpose(1, 2).reshape(1, n, self.q_size)
            h = residual + attn.o_proj(o)
            residual = h
            x = _rms_norm(h, layer.post_attention_layernorm.weight, self.eps)
            gate, up = F.linear(x, self.gate_up[i]).chunk(2, dim=-1)
            h = residual + layer.mlp.down_proj(layer.mlp.act_fn(gate) * up)
        return _rms_norm(h, self.norm.weight, self.eps)
