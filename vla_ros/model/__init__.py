"""The VLA network family in PyTorch on transformers building blocks (no ROS, no backends).

The names below are loaded on first use: importing transformers' Qwen3-VL code takes seconds,
and processes that only read a model's config.json (`vla-ros eval` checking a model before it
starts its workers) should not pay for it.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from vla_ros.model.families.kv_expert import KVExpertVLA
    from vla_ros.model.text_tokenizer import TextTokenizer

_LAZY = {
    "ActionStats": "action_space", "UnicycleAccelCurvature": "action_space",
    "CheckpointError": "checkpoint", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "VLAConfig": "config", "KVExpertVLA": "families.kv_expert", "TextTokenizer": "text_tokenizer",
    "UnknownPresetError": "presets", "build_preset": "presets", "is_preset": "presets", "preset_names": "presets",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"vla_ros.model.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'vla_ros.model' has no attribute {name!r}")


def load_model(path_or_preset: str | Path, device: "str | torch.device" = "cpu",
               dtype: "str | torch.dtype" = "float32") -> "tuple[KVExpertVLA, TextTokenizer]":
    """A checkpoint directory, a LeRobot pi0 / pi0.5 policy directory or a `random:` preset ->
    (model in eval mode, tokenizer)."""
    from vla_ros.model.build import parse_dtype
    from vla_ros.model.checkpoint import load_checkpoint
    from vla_ros.model.lerobot_checkpoint import is_lerobot_policy_dir, load_lerobot_policy
    from vla_ros.model.presets import build_preset, is_preset

    dt = parse_dtype(dtype)
    if is_preset(str(path_or_preset)):
        return build_preset(str(path_or_preset), device=device, dtype=dt)
    if is_lerobot_policy_dir(path_or_preset):
        return load_lerobot_policy(path_or_preset, device=device, dtype=dt)
    return load_checkpoint(path_or_preset, device=device, dtype=dt)


__all__ = ["ActionStats", "CheckpointError", "KVExpertVLA", "TextTokenizer", "UnicycleAccelCurvature",
           "UnknownPresetError", "VLAConfig", "build_preset", "load_checkpoint", "load_model", "preset_names",
           "save_checkpoint"]
