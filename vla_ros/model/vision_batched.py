"""The Qwen3-VL vision tower run as one batch when every image has the same grid.

transformers' tower packs all images into one sequence and, without flash-attention, splits it
back into one attention call per image per block, and builds the position tables image by image.
With a frame stack (16 images a tick) or a training batch (64 ticks x 16 images) that is 1000s of
small kernel launches: on an H100 training step it was most of the 614 ms. Same-size images (what
the sensing pipeline always produces) need the position tables once and one batched attention per
block. Weights, maths and outputs are the tower's own. Anything else takes transformers' own path:
mixed sizes, video, flash-attention (its packed kernel is fast already), gradient checkpointing,
and a transformers without the helpers or attributes this reads.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb_vision

try:  # transformers >= 5 builds the tower's position tables with these; older versions take the packed path
    from transformers.vision_utils import get_vision_interpolation_indices_and_weights, get_vision_position_ids
except ImportError:  # pragma: no cover - depends on the installed transformers
    get_vision_interpolation_indices_and_weights = get_vision_position_ids = None


def image_features(vm, pixel_values: torch.Tensor, grid_thw: torch.Tensor):
    """Like `Qwen3VLModel.get_image_features`: `.pooler_output` one (tokens, D) tensor per image,
    `.deepstack_features` per deepstack layer one tensor per image."""
    visual = vm.visual
    if not _fast_path_applies(visual):
        return vm.get_image_features(pixel_values, grid_thw)
    rows = grid_thw.tolist()
    if not rows or rows.count(rows[0]) != len(rows) or rows[0][0] != 1:
        return vm.get_image_features(pixel_values, grid_thw)  # mixed sizes or video: the packed path
    n = len(rows)
    h = visual.patch_embed(pixel_values.type(visual.dtype))  # (n * P, D)
    pos, cos, sin = _position_tables(visual, grid_thw[:1], h)
    per_image = pos.shape[0]
    h = (h.view(n, per_image, -1) + pos.to(h.dtype)).view(n * per_image, -1)
    deepstack = []
    for layer, block in enumerate(visual.blocks):
        h = h + _attention(block.attn, block.norm1(h), n, cos, sin)
        h = h + block.mlp(block.norm2(h))
        if layer in visual.deepstack_visual_indexes:
            deepstack.append(visual.deepstack_merger_list[visual.deepstack_visual_indexes.index(layer)](h))
    merged = visual.merger(h)
    tokens = merged.shape[0] // n
    return SimpleNamespace(pooler_output=merged.split(tokens), deepstack_features=[d.split(tokens) for d in deepstack])


def _position_tables(visual, one: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The interpolated position embedding (P, D) and the rotary cos/sin of one image grid, the
    same for every image. Without gradients they are cached per grid (0.3 of the R1 fixture's
    3.8 ms tower: transformers builds them in Python), keyed by the version of the weights they
    read, so an optimizer step or a load builds them again."""
    def build() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx, weights = get_vision_interpolation_indices_and_weights(
            one, num_grid_per_side=visual.num_grid_per_side, mode=visual.interpolation_mode,
            align_corners=visual.interpolation_align_corners, spatial_merge_size=visual.spatial_merge_size)
        pos = (visual.pos_embed(idx) * weights[:, :, None]).sum(1)
        cos, sin = visual.rotary_pos_emb(h, get_vision_position_ids(one, visual.spatial_merge_size))
        return pos, cos, sin

    w = visual.pos_embed.weight
    if torch.is_grad_enabled() and w.requires_grad:
        return build()
    key = (tuple(one[0].tolist()), w.data_ptr(), w._version, h.dtype, h.device)
    cache = visual.__dict__.setdefault("_vla_ros_position_tables", {})
    if key not in cache:
        if len(cache) >= 8:
            cache.clear()
        cache[key] = build()
    return cache[key]


def _fast_path_applies(visual) -> bool:
    if get_vision_position_ids is None or not all(hasattr(visual, a) for a in _READS):
        return False
    if getattr(visual, "gradient_checkpointing", False) and torch.is_grad_enabled():
        return False
    return getattr(visual.config, "_attn_implementation", None) in (None, "sdpa", "eager")


_READS = ("num_grid_per_side", "interpolation_mode", "interpolation_align_corners", "spatial_merge_size",
          "pos_embed", "rotary_pos_emb", "blocks", "merger", "deepstack_visual_indexes", "deepstack_merger_list")


def _attention(attn, x: torch.Tensor, n: int, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Bidirectional attention within each image: x (n * P, D) -> (n * P, D)."""
    per_image = x.shape[0] // n
    q, k, v = attn.qkv(x).view(n, per_image, 3, attn.num_heads, -1).unbind(2)  # each (n, P, heads, hd)
    q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=attn.scaling)
    return attn.proj(o.transpose(1, 2).reshape(x.shape[0], -1))
