"""Seeded random-weight presets, usable wherever a model path is accepted (`random:tiny`).

random:tiny              ~5M parameters, 4 layers of hidden 256 (VLM text and expert), a 2-block
                         vision tower; 16 images of 320x576 become 96x224 (21 tokens each, ~530 prompt tokens).
random:alpamayo-r1-10b   the published dimensions: Qwen3-VL-8B (36 layers, hidden 4096, 32 heads,
                         8 KV heads, head_dim 128; vision 27 blocks of 1152) + a 2.3B expert
                         (hidden 2048, 16 heads, 8 KV heads, head_dim 128, 36 layers); images
                         320x576 (180 tokens each). For GPU benchmarks: built directly on the
                         device in the requested dtype.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vla_ros.model.config import ImageConfig, PromptConfig, VLAConfig
from vla_ros.model.text_tokenizer import TextTokenizer, build_byte_tokenizer, special_token_names

if TYPE_CHECKING:  # torch and the network code load in build_preset: preset_config stays cheap
    import torch

    from vla_ros.model.families.kv_expert import KVExpertVLA

PRESET_PREFIX = "random:"


class UnknownPresetError(ValueError):
    """A `random:` name that is not a known preset."""


@dataclass(frozen=True)
class _Preset:
    text: dict
    vision: dict
    expert: dict
    image: ImageConfig
    seed: int
    # Small presets are built on the CPU in float32 and then moved/cast, so the weights are the
    # same on every device; big ones are built on the target device in the target dtype.
    build_on_cpu: bool


def _rope(head_dim: int) -> dict:
    half = head_dim // 2
    t = half - 2 * (half * 5 // 16)
    return {"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [t, half * 5 // 16, half * 5 // 16],
            "mrope_interleaved": True}


_PRESETS: dict[str, _Preset] = {
    "tiny": _Preset(
        text=dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=64, rope_parameters=_rope(64), max_position_embeddings=32768,
                  rms_norm_eps=1e-6),
        vision=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, patch_size=16, spatial_merge_size=2,
                    temporal_patch_size=2, out_hidden_size=256, num_position_embeddings=256, deepstack_visual_indexes=[0]),
        expert={},
        image=ImageConfig(min_pixels=16_384, max_pixels=28_672, nominal_height=320, nominal_width=576),
        seed=1234, build_on_cpu=True),
    "alpamayo-r1-10b": _Preset(
        text=dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                  num_key_value_heads=8, head_dim=128, rope_parameters=_rope(128), max_position_embeddings=262144,
                  rms_norm_eps=1e-6),
        vision=dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, patch_size=16,
                    spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=4096, num_position_embeddings=2304,
                    deepstack_visual_indexes=[8, 16, 24]),
        expert=dict(hidden_size=2048, num_attention_heads=16, intermediate_size=8192),
        image=ImageConfig(),
        seed=1234, build_on_cpu=False),
}


def preset_names() -> list[str]:
    return [PRESET_PREFIX + n for n in _PRESETS]


def is_preset(name: str) -> bool:
    return str(name).startswith(PRESET_PREFIX)


def preset_config(name: str) -> VLAConfig:
    key = name[len(PRESET_PREFIX):] if is_preset(name) else name
    if key not in _PRESETS:
        raise UnknownPresetError(f"unknown model preset {name!r}; known presets: {', '.join(preset_names())}")
    p = _PRESETS[key]
    prompt = PromptConfig()
    base = 256 + len(special_token_names(prompt))  # byte tokens + specials, then the traj tokens
    vocab = base + 1000
    ids = {n: 256 + i for i, n in enumerate(special_token_names(prompt))}
    vlm = {
        "model_type": "qwen3_vl",
        "text_config": {**p.text, "vocab_size": vocab, "model_type": "qwen3_vl_text"},
        "vision_config": {**p.vision, "model_type": "qwen3_vl_vision"},
        "image_token_id": ids[prompt.image_pad], "video_token_id": ids[prompt.video_pad],
        "vision_start_token_id": ids[prompt.vision_start], "vision_end_token_id": ids[prompt.vision_end],
        "tie_word_embeddings": False,
    }
    return VLAConfig(architecture="kv_expert", vlm=vlm, expert=dict(p.expert), image=p.image, prompt=prompt,
                     name=PRESET_PREFIX + key)


def build_preset(name: str, device: "str | torch.device" = "cpu", dtype: "torch.dtype | None" = None) -> "tuple[KVExpertVLA, TextTokenizer]":
    """Same preset name (and, for big presets, device and dtype) -> same weights (dtype default float32)."""
    import torch

    from vla_ros.model.action_space import ActionStats
    from vla_ros.model.build import build_model, cast_parameters

    dtype = dtype if dtype is not None else torch.float32
    config = preset_config(name)
    p = _PRESETS[config.name[len(PRESET_PREFIX):]]
    stats = ActionStats()
    if p.build_on_cpu:
        model = cast_parameters(build_model(config, stats, device="cpu", dtype=torch.float32, seed=p.seed), device, dtype)
    else:
        model = build_model(config, stats, device=device, dtype=dtype, seed=p.seed)
    tok = TextTokenizer(build_byte_tokenizer(config.prompt, config.history.bins), config.prompt, config.history.bins)
    return model, tok
