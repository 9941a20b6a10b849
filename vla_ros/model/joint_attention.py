"""The uncached joint forward of a kv_expert: [prefix | action tokens] through both stacks at once.

Per layer, the VLM layer projects the prefix tokens and the expert layer the action tokens to
Q/K/V; one attention over the joint K/V with the block mask

    prefix rows:  causal over the prefix (as in generation), never the action tokens
    action rows:  the whole prefix and every action token (bidirectional)

then each stream applies its own o_proj, residual, post-attention norm and MLP (pi0 /
InternVLA-A1 style). This is the slow reference that the cached runtime and the training forward
must reproduce. It is kept independent of them on purpose: built from the transformers modules
and functions (their norms and MLPs, `apply_rotary_pos_emb`, `eager_attention_forward`), not from
`vla_ros.model.qwen3_layer`, so a wrong mask, position or norm there shows up here.
"""
from __future__ import annotations

import torch
from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb, eager_attention_forward

from vla_ros.model.families.kv_expert import KVExpertVLA
from vla_ros.model.vision_batched import image_features


def joint_block_mask(prefix_len: int, action_len: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(1, 1, P+T, P+T) additive mask: 0 where attention is allowed, dtype-min elsewhere."""
    n = prefix_len + action_len
    allowed = torch.zeros(n, n, dtype=torch.bool, device=device)
    allowed[:prefix_len, :prefix_len] = torch.ones(prefix_len, prefix_len, dtype=torch.bool, device=device).tril()
    allowed[prefix_len:, :] = True
    mask = torch.zeros(n, n, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def layer_qkv(layer: torch.nn.Module, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A Qwen3 layer's pre-norm, q/k/v with per-head norms and rotary, through the transformers
    modules: h (B, S, D) -> q, k, v (B, heads, S, hd)."""
    attn = layer.self_attn
    x = layer.input_layernorm(h)
    shape = (*x.shape[:-1], -1, attn.head_dim)
    q = attn.q_norm(attn.q_proj(x).view(shape)).transpose(1, 2)
    k = attn.k_norm(attn.k_proj(x).view(shape)).transpose(1, 2)
    v = attn.v_proj(x).view(shape).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    return q, k, v


def _finish(layer: torch.nn.Module, h: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
    h = h + layer.self_attn.o_proj(attn_out.reshape(*h.shape[:-1], -1))
    return h + layer.mlp(layer.post_attention_layernorm(h))


def joint_forward(model: KVExpertVLA, prefix_embeds: torch.Tensor, prefix_positions: torch.Tensor,
                  action_embeds: torch.Tensor, action_positions: torch.Tensor,
                  visual_pos_masks: torch.Tensor | None = None,
                  deepstack_embeds: list[torch.Tensor] | None = None) -> torch.Tensor:
    """prefix_embeds (1, P, Dv) (vision tokens already scattered in), prefix_positions (3, 1, P),
    action_embeds (1, T, De), action_positions (3, 1, T) -> expert last hidden (1, T, De), normed."""
    lm, expert = model.vlm.model.language_model, model.expert
    p, t = prefix_embeds.shape[1], action_embeds.shape[1]
    mask = joint_block_mask(p, t, prefix_embeds.dtype, prefix_embeds.device)
    cos_p, sin_p = lm.rotary_emb(prefix_embeds, prefix_positions)
    cos_a, sin_a = expert.rotary_emb(action_embeds, action_positions)
    hp, ha = prefix_embeds, action_embeds
    for idx, (vl, el) in enumerate(zip(lm.layers, expert.layers)):
        qp, kp, vp = layer_qkv(vl, hp, cos_p, sin_p)
        qa, ka, va = layer_qkv(el, ha, cos_a, sin_a)
        k, v = torch.cat([kp, ka], dim=2), torch.cat([vp, va], dim=2)
        # One joint attention; queries of each stream use their rows of the block mask.
        op, _ = eager_attention_forward(vl.self_attn, qp, k, v, mask[:, :, :p], scaling=vl.self_attn.scaling)
        oa, _ = eager_attention_forward(el.self_attn, qa, k, v, mask[:, :, p:], scaling=el.self_attn.scaling)
        hp, ha = _finish(vl, hp, op), _finish(el, ha, oa)
        if deepstack_embeds is not None and idx < len(deepstack_embeds):
            hp = lm._deepstack_process(hp, visual_pos_masks, deepstack_embeds[idx])
    return expert.norm(ha)


def embed_prefix(model: KVExpertVLA, input_ids: torch.Tensor, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor,
                 mm_token_type_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Prompt ids (1, P) + patches -> (embeds (1, P, D) with vision tokens scattered in,
    M-RoPE positions (3, 1, P), visual position mask (1, P), deepstack features per layer)."""
    vm = model.vlm.model
    embeds = vm.get_input_embeddings()(input_ids)
    feats = image_features(vm, pixel_values, image_grid_thw)
    image_embeds = torch.cat(feats.pooler_output, dim=0).to(embeds.dtype)
    mask, _ = vm.get_placeholder_mask(input_ids, inputs_embeds=embeds, image_features=image_embeds)
    embeds = embeds.masked_scatter(mask, image_embeds)
    positions, _ = vm.get_rope_index(input_ids, mm_token_type_ids, image_grid_thw=image_grid_thw)
    deepstack = [torch.cat(f, dim=0) for f in feats.deepstack_features]
    return embeds, positions, mask[..., 0], deepstack
