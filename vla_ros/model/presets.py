"""Seeded random-weight presets, usable wherever a model path is accepted (`random:tiny`).

random:tiny              ~5M parameters, 4 layers of hidden 256 (VLM text and expert), a 2-block
                         vision tower; 16 images of 320x576 become 96x224 (21 tokens each, ~530 prompt tokens).
random:alpamayo-r1-10b   the published dimensions in the released structure: Qwen3-VL-8B (36 layers,
                         hidden 4096, 32 heads, 8 KV heads, head_dim 128; vision 27 blocks of 1152)
                         + a 2.3B expert (hidden 2048, 16 heads, 8 KV heads, head_dim 128, 36
                         layers), the release's action-in projection (PerWaypointActionInProjV2
                         with the reference code's defaults: 4 layers of 1024, 20 Fourier features
                         up to 100), no clipping, the reference speed estimate, history tokens and
                         reasoning stop; images 320x576 (180 tokens each). For GPU benchmarks:
                         built directly on the device in the requested dtype.
random:alpamayo-r1-tiny  random:tiny's sizes in that released structure (CPU tests and benches).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vla_ros.model.config import ActionProjConfig, ActionSpaceConfig, HistoryConfig, ImageConfig, PromptConfig, VLAConfig
from vla_ros.model.text_tokenizer import TextTokenizer, build_byte_tokenizer, special_token_names

if TYPE_CHECKING:  # torch and the network code load in build_preset: preset_config stays cheap
    import torch

    from vla_ros.model.families.kv_expert import KVExpertVLA

PRESET_PREFIX = "random:"


RELEASE_OUT_PROJ_SCALE = 0.01


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
    # The Alpamayo-R1 release's structure (vla_ros/model/alpamayo_release.py) instead of drive-tiny's.
    release: bool = False
    vocab_size: int = 0  # embedding rows; 0: the byte tokenizer's vocabulary


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
        seed=1234, build_on_cpu=False, release=True,
        # The release's rows: Qwen3-VL's tokenizer (151,669 tokens) + 4,000 trajectory tokens (the
        # reference's RL config) + the 28 special tokens Qwen lacks (docs/alpamayo_r1.md §5).
        vocab_size=151_669 + 4_000 + 28),
}
_PRESETS["alpamayo-r1-tiny"] = dataclasses.replace(_PRESETS["tiny"], release=True)


def _release_structure(prompt: PromptConfig) -> dict:
    """The sections that make a preset the released structure (reference code defaults where the
    release's own config.json values are not known offline)."""
    from vla_ros.model.alpamayo_release import INSTRUCTION, SYSTEM

    return dict(action_proj=ActionProjConfig(type="alpamayo_v2", max_frequency=100.0, fourier_features=20,
                                             encoder_layers=4, encoder_hidden=1024),
                action_space=ActionSpaceConfig(accel_bound=9.8, curvature_bound=0.2, clip=False,
                                               speed_estimate="trapezoid_smooth"),
                history=HistoryConfig(scheme="prev_delta_round"),
                prompt=dataclasses.replace(prompt, system=SYSTEM, instruction=INSTRUCTION, reasoning_stop="future_start"))


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
        "text_config": {**p.text, "vocab_size": p.vocab_size or vocab, "model_type": "qwen3_vl_text"},
        "vision_config": {**p.vision, "model_type": "qwen3_vl_vision"},
        "image_token_id": ids[prompt.image_pad], "video_token_id": ids[prompt.video_pad],
        "vision_start_token_id": ids[prompt.vision_start], "vision_end_token_id": ids[prompt.vision_end],
        "tie_word_embeddings": False,
    }
    sections = _release_structure(prompt) if p.release else dict(prompt=prompt)
    return VLAConfig(architecture="kv_expert", vlm=vlm, expert=dict(p.expert), image=p.image,
                     name=PRESET_PREFIX + key, **sections)


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
    if p.release:
        # Random Fourier features up to 100 cycles per unit make a random velocity field chaotic:
        # float32 rounding between two exact implementations grows ~5x per Euler step. A small
        # output projection (as trained flow models start from) keeps the 10-step chain
        # well-conditioned, so runtime-vs-baseline comparisons on these presets mean something.
        with torch.no_grad():
            model.action_out_proj.weight.mul_(RELEASE_OUT_PROJ_SCALE)
    tok = TextTokenizer(build_byte_tokenizer(config.prompt, config.history.bins), config.prompt, config.history.bins)
    return model, tok


def preset_parameter_counts(name: str) -> dict[str, int]:
    """Parameters per part of a preset, counted on the meta device (no memory, no weights):
    vlm.visual, vlm.text (embeddings, layers, lm_head), expert, action_in_proj, action_out_proj."""
    import torch

    from vla_ros.model.families import family_class

    config = preset_config(name)
    with torch.device("meta"):
        model = family_class(config.architecture)(config)
    counts: dict[str, int] = {}
    for key, p in model.named_parameters():
        part = key.split(".")[0]
        if part == "vlm":
            part = "vlm.visual" if key.startswith("vlm.model.visual.") else "vlm.text"
        counts[part] = counts.get(part, 0) + p.numel()
    return counts
