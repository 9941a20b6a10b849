"""Export-friendly torch modules for the graphs of `vla-ros export`.

The decoder layers are the runtime's own (`vla_ros.model.qwen3_layer.Qwen3Layer`, unfused: the
export folds the q/k/v concatenation into one initializer); this file supplies what does not
export cleanly or is shaped for the runtime rather than for a graph: attention (plain matmul +
softmax, batched over images or samples), rotary tables (computed in the graph from integer
positions; only inverse frequencies, which derive from the config, are constants), the DeepStack
injection (a dense add) and the cached denoise step (one softmax over [prefix | own suffix]
without copying the prefix per sample). The vision tower's blocks are the model's modules. All
graphs are batch-1 in the prefix.

    embed.onnx         input_ids (1, P) int64                        -> inputs_embeds (1, P, D)
    vision.onnx        pixel_patches (B, L, Cp), pos_index (L, 4), pos_weight (L, 4),
                       rope_cos / rope_sin (L, hd_v)                  -> image_embeds (B, L/m^2, D),
                                                                         deepstack_embeds (K, B, L/m^2, D)
    prefill.onnx       inputs_embeds (1, P, D), deepstack_embeds (K, 1, P, D), position_ids (3, 1, P),
                       attention_mask (1, P) int64                    -> prefix_keys / prefix_values
                                                                         (NL, KVH, P, hd), logits (1, V)
    denoise_step.onnx  x (S, T, A) f32, t (1,) f32, dt (1,) f32, prefix_keys / prefix_values
                       (NL, KVH, P, hd), prefix_mask (1, P) int64, suffix_positions (T,) int64
                                                                      -> velocity (S, T, A) f32,
                                                                         x_next (S, T, A) f32

The noisy actions, the flow time and the step stay float32 at the graph boundary whatever the
export dtype (error accumulates over the Euler steps); the velocity is returned in float32.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from vla_ros.model.families.kv_expert import KVExpertVLA
from vla_ros.model.qwen3_layer import Qwen3Layer, attention_matmul as _attend, rms_norm, rotate_half as _rotate_half

# Additive bias of masked keys: large and finite (a row with every key masked stays finite).
_MASKED = -1e30


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Unmasked attention with grouped KV heads, without repeating K/V: q (B, H, N, hd), k/v
    (B, KVH, M, hd) -> (B, H, N, hd); query head h reads KV head h // (H / KVH), as SDPA's
    enable_gqa (which the TorchScript exporter cannot convert)."""
    b, nh, _, hd = q.shape
    nkv = k.shape[1]
    # -1 for the token axis: a size read from an intermediate tensor may be traced as a constant
    o = _attend(q.reshape(b, nkv, -1, hd), k, v, scale, None)
    return o.reshape(b, nh, -1, hd)


def cached_step_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, prefix_keys: torch.Tensor,
                          prefix_values: torch.Tensor, scale: float, prefix_bias: torch.Tensor | None = None
                          ) -> torch.Tensor:
    """The denoise step's attention for S samples against one cached prefix: q (S, H, T, hd), the
    samples' own k/v (S, KVH, T, hd), prefix_keys/values (KVH, P, hd) shared (never copied per
    sample), prefix_bias (P,) additive float32 or None -> (S, T, H*hd). Each sample's queries see
    the prefix and its own T keys, in one softmax over the concatenated scores."""
    _, nh, n, hd = q.shape  # T and hd are static; S is read from no intermediate tensor (traced
    nkv = k.shape[1]         # as a constant there): -1
    p = prefix_keys.shape[1]
    qg = q.reshape(-1, nkv, (nh // nkv) * n, hd)  # query heads grouped under their KV head
    sp = torch.matmul(qg, prefix_keys.transpose(-1, -2)).float() * scale  # (S, KVH, gT, P)
    if prefix_bias is not None:
        sp = sp + prefix_bias
    ss = torch.matmul(qg, k.transpose(-1, -2)).float() * scale  # (S, KVH, gT, T)
    prob = torch.softmax(torch.cat((sp, ss), dim=-1), dim=-1).to(v.dtype)
    o = torch.matmul(prob[..., :p], prefix_values) + torch.matmul(prob[..., p:], v)  # (S, KVH, gT, hd)
    return o.reshape(-1, nh, n, hd).transpose(1, 2).flatten(2)


def text_rope_axes(rotary: nn.Module, head_dim: int) -> torch.Tensor:
    """For each of the hd/2 rotary frequencies, which M-RoPE axis (0 t, 1 h, 2 w) drives it:
    the interleaved layout of Qwen3-VL (t everywhere, h at 1::3 and w at 2::3 up to 3*section)."""
    axes = torch.zeros(head_dim // 2, dtype=torch.long)
    section = rotary.mrope_section
    for dim, offset in ((1, 1), (2, 2)):
        axes[offset:section[dim] * 3:3] = dim
    return axes


class EmbedGraph(nn.Module):
    """input_ids (1, P) int64 -> inputs_embeds (1, P, D)."""

    def __init__(self, model: KVExpertVLA) -> None:
        super().__init__()
        self.embed = model.vlm.model.language_model.embed_tokens

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed(input_ids)


class VisionGraph(nn.Module):
    """The Qwen3-VL vision tower for B images of one size, each attending only to itself.

    The per-grid tables (learned position-embedding interpolation taps and the 2D rotary cos/sin)
    are inputs: they depend on the image size only and are computed once per size by the runtime
    (`vision_tables`), so one graph serves every size."""

    def __init__(self, model: KVExpertVLA) -> None:
        super().__init__()
        vis = model.vlm.model.visual
        self.vis = vis
        cfg = vis.config
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.hidden_size // cfg.num_heads
        self.deepstack_indexes = list(cfg.deepstack_visual_indexes)

    def forward(self, pixel_patches: torch.Tensor, pos_index: torch.Tensor, pos_weight: torch.Tensor,
                rope_cos: torch.Tensor, rope_sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vis = self.vis
        b, n, _ = pixel_patches.shape
        proj = vis.patch_embed.proj  # Conv3d with kernel == stride == one patch: a linear map
        w = proj.weight.reshape(proj.weight.shape[0], -1)
        h = torch.matmul(pixel_patches.to(w.dtype), w.t()) + proj.bias  # (B, L, Dv)
        pos = (vis.pos_embed(pos_index) * pos_weight[:, :, None]).sum(1)  # (L, Dv), float32 taps
        h = h + pos.to(h.dtype)
        cos, sin = rope_cos[:, None, :].float(), rope_sin[:, None, :].float()  # (L, 1, hd_v)
        deep = []
        for i, blk in enumerate(vis.blocks):
            x = blk.norm1(h)
            qkv = blk.attn.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, L, H, hd)
            q = (q.float() * cos + _rotate_half(q.float()) * sin).to(v.dtype)
            k = (k.float() * cos + _rotate_half(k.float()) * sin).to(v.dtype)
            o = _attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), blk.attn.scaling, None)
            h = h + blk.attn.proj(o.transpose(1, 2).reshape(b, n, -1))
            h = h + blk.mlp(blk.norm2(h))
            if i in self.deepstack_indexes:
                merger = vis.deepstack_merger_list[self.deepstack_indexes.index(i)]
                deep.append(merger(h.reshape(b * n, -1)).reshape(b, n // vis.spatial_merge_unit, -1))
        out = vis.merger(h.reshape(b * n, -1)).reshape(b, n // vis.spatial_merge_unit, -1)
        return out, torch.stack(deep)


class PrefillGraph(nn.Module):
    """The VLM text model over the whole prompt (causal, padding keys masked) -> every layer's
    K/V and the logits of the last real token."""

    def __init__(self, model: KVExpertVLA) -> None:
        super().__init__()
        lm = model.vlm.model.language_model
        self.layers = lm.layers
        self.qwen3 = Qwen3Layer.stack(lm.layers, lm.config)
        self.norm = lm.norm
        self.lm_head = model.vlm.lm_head
        cfg = lm.config
        self.num_heads, self.kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.register_buffer("inv_freq", lm.rotary_emb.inv_freq.detach().float().clone(), persistent=False)
        self.register_buffer("rope_axes", text_rope_axes(lm.rotary_emb, cfg.head_dim), persistent=False)
        self.rope_scale = float(lm.rotary_emb.attention_scaling)

    def forward(self, inputs_embeds: torch.Tensor, deepstack_embeds: torch.Tensor, position_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = inputs_embeds
        p = h.shape[1]
        dtype = h.dtype
        # rotary: each frequency takes its position from its M-RoPE axis
        pos = position_ids[:, 0, :].t()  # (P, 3)
        sel = torch.index_select(pos, 1, self.rope_axes).float()  # (P, hd/2)
        freqs = sel * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = (emb.cos() * self.rope_scale).to(dtype)[None, :, None]  # (1, P, 1, hd)
        sin = (emb.sin() * self.rope_scale).to(dtype)[None, :, None]
        # causal + key padding, as an additive float32 bias (1, 1, P, P)
        idx = torch.arange(p, device=h.device)
        allowed = (idx[None, :] <= idx[:, None]) & (attention_mask[0] > 0)[None, :]
        bias = torch.where(allowed, 0.0, _MASKED)[None, None]
        g = self.num_heads // self.kv_heads
        keys, values = [], []

        def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            keys.append(k[0])
            values.append(v[0])
            # GQA without repeating K/V: group the query heads under their KV head
            qg = q.view(1, self.kv_heads, g * p, self.head_dim) if g == 1 else \
                q.view(1, self.kv_heads, g, p, self.head_dim)
            kg = k if g == 1 else k[:, :, None]
            vg = v if g == 1 else v[:, :, None]
            o = _attend(qg, kg, vg, self.qwen3[0].scaling, bias if g == 1 else bias[:, :, None])
            return o.reshape(1, self.num_heads, p, self.head_dim).transpose(1, 2).reshape(1, p, -1)

        for i, layer in enumerate(self.qwen3):
            h = layer(h, cos, sin, attend)
            if i < deepstack_embeds.shape[0]:  # DeepStack: zeros outside the image tokens
                h = h + deepstack_embeds[i]
        last = (attention_mask[0].sum() - 1).reshape(1)
        hl = torch.index_select(h[0], 0, last)  # (1, D)
        logits = self.lm_head(self.norm(hl)).float()
        return torch.stack(keys), torch.stack(values), logits


class DenoiseStepGraph(nn.Module):
    """One flow-matching step of the action expert against a cached prefix, for S samples.

    Each sample's T action tokens attend to the valid prefix keys and bidirectionally to their own
    T keys; prefix and suffix scores share one softmax (concatenated scores, no K/V copies)."""

    def __init__(self, model: KVExpertVLA) -> None:
        super().__init__()
        ex = model.expert
        self.layers = ex.layers
        self.qwen3 = Qwen3Layer.stack(ex.layers, ex.config)
        self.norm = ex.norm
        self.eps = ex.config.rms_norm_eps
        self.action_in = model.action_in_proj
        self.action_out = model.action_out_proj
        cfg = ex.config
        self.num_heads, self.kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.time_dim = model.action_in_proj.cfg.time_embed_dim
        self.release_proj = model.action_in_proj.cfg.type == "alpamayo_v2"  # the Alpamayo releases' projection
        self.register_buffer("inv_freq", ex.rotary_emb.inv_freq.detach().float().clone(), persistent=False)
        self.rope_scale = float(ex.rotary_emb.attention_scaling)

    def _time_term(self, t: torch.Tensor) -> torch.Tensor:
        """t (1,) float32 -> (1, mid): sinusoidal embedding (as `sinusoidal_embedding`) + time_proj;
        the release projection's own time term (Fourier features through the time columns)."""
        if self.release_proj:
            return self.action_in.time_term(t.float())
        half = self.time_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        angles = (t.float() * 1000.0)[:, None] * freqs
        emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
        return self.action_in.time_proj(emb.to(self.action_in.time_proj.weight.dtype))

    def forward(self, x: torch.Tensor, t: torch.Tensor, dt: torch.Tensor, prefix_keys: torch.Tensor,
                prefix_values: torch.Tensor, prefix_mask: torch.Tensor,
                suffix_positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = self.action_out.weight.dtype
        h = self.action_in.forward_with_time_term(x.to(dtype), self._time_term(t))  # (S, T, D)
        freqs = suffix_positions.float()[:, None] * self.inv_freq  # equal M-RoPE axes: plain RoPE
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = (emb.cos() * self.rope_scale).to(dtype)[None, :, None]  # (1, T, 1, hd)
        sin = (emb.sin() * self.rope_scale).to(dtype)[None, :, None]
        bias_p = torch.where(prefix_mask[0] > 0, 0.0, _MASKED)  # (P,) float32
        for i, layer in enumerate(self.qwen3):
            def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: int = i) -> torch.Tensor:
                return cached_step_attention(q, k, v, prefix_keys[i], prefix_values[i], layer.scaling, bias_p)

            h = layer(h, cos, sin, attend)
        vel = self.action_out(rms_norm(h, self.norm.weight, self.eps)).float()
        return vel, x + dt * vel
