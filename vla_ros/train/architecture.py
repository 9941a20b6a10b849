"""The drive-tiny architecture: a kv_expert small and fast enough for 10 Hz on a 2-core CPU.

Choices, each for latency on this CPU (a tick = 4 new images encoded + prefill of ~330 tokens +
10 expert steps over 64 action tokens):
- images 64x128 (the 320x576 cameras scaled by ~0.22): 2x4 merged patches = 8 tokens per image,
  128 vision tokens for 4 cameras x 4 frames;
- VLM text and expert: 3 layers, hidden 128, 4 heads of 32, 2 KV heads, MLP 384;
- vision tower: 2 blocks of hidden 96, one deepstack level;
- vocabulary: the trained BPE (specials, 1000 trajectory tokens, ~500 byte/merge tokens).
A `--config` JSON (a full or partial VLAConfig dict) overrides these; the vocabulary and the
special token ids always come from the tokenizer.
"""
from __future__ import annotations

from typing import Any

from vla_ros.model.config import ImageConfig, VLAConfig
from vla_ros.model.text_tokenizer import TextTokenizer


def _rope(head_dim: int) -> dict[str, Any]:
    # Qwen3-VL splits the rotary half-dimension into (t, h, w) sections, interleaved.
    half = head_dim // 2
    hw = half * 5 // 16
    return {"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [half - 2 * hw, hw, hw], "mrope_interleaved": True}


DRIVE_TINY_TEXT: dict[str, Any] = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=3, num_attention_heads=4,
                                       num_key_value_heads=2, head_dim=32, rope_parameters=_rope(32),
                                       max_position_embeddings=4096, rms_norm_eps=1e-6)
DRIVE_TINY_VISION: dict[str, Any] = dict(depth=2, hidden_size=96, intermediate_size=192, num_heads=2, patch_size=16,
                                         spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=128,
                                         num_position_embeddings=256, deepstack_visual_indexes=[0])
# 320x576 -> 64x128: smart_resize scales by sqrt(320*576 / max_pixels) then floors to multiples of 32.
DRIVE_TINY_IMAGE = ImageConfig(min_pixels=4_096, max_pixels=10_240, nominal_height=320, nominal_width=576)


def drive_tiny_config(tokenizer: TextTokenizer, name: str = "drive-tiny", overrides: dict[str, Any] | None = None) -> VLAConfig:
    """The VLAConfig for `tokenizer`'s vocabulary; `overrides` is a (partial) VLAConfig dict."""
    base = VLAConfig(vlm={"text_config": dict(DRIVE_TINY_TEXT), "vision_config": dict(DRIVE_TINY_VISION)},
                     image=DRIVE_TINY_IMAGE, prompt=tokenizer.prompt, name=name).to_dict()
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = value
    ids = tokenizer.ids
    vlm = base["vlm"]
    vlm["model_type"] = "qwen3_vl"
    vlm["text_config"] = {**vlm["text_config"], "vocab_size": tokenizer.vocab_size, "model_type": "qwen3_vl_text"}
    vlm["vision_config"] = {**vlm["vision_config"], "model_type": "qwen3_vl_vision"}
    vlm.update(image_token_id=ids.image_pad, video_token_id=ids.video_pad, vision_start_token_id=ids.vision_start,
               vision_end_token_id=ids.vision_end, tie_word_embeddings=False)
    return VLAConfig.from_dict(base)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
