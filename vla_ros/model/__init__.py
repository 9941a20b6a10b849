"""The VLA network family in PyTorch on transformers building blocks (no ROS, no backends)."""
from __future__ import annotations

from pathlib import Path

import torch

from vla_ros.model.action_space import ActionStats, UnicycleAccelCurvature
from vla_ros.model.build import parse_dtype
from vla_ros.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vla_ros.model.config import VLAConfig
from vla_ros.model.kv_expert import KVExpertVLA
from vla_ros.model.presets import UnknownPresetError, build_preset, is_preset, preset_names
from vla_ros.model.text_tokenizer import TextTokenizer


def load_model(path_or_preset: str | Path, device: str | torch.device = "cpu",
               dtype: str | torch.dtype = torch.float32) -> tuple[KVExpertVLA, TextTokenizer]:
    """A checkpoint directory or a `random:` preset -> (model in eval mode, tokenizer)."""
    dt = parse_dtype(dtype)
    if is_preset(str(path_or_preset)):
        return build_preset(str(path_or_preset), device=device, dtype=dt)
    return load_checkpoint(path_or_preset, device=device, dtype=dt)


__all__ = ["ActionStats", "CheckpointError", "KVExpertVLA", "TextTokenizer", "UnicycleAccelCurvature",
           "UnknownPresetError", "VLAConfig", "build_preset", "load_checkpoint", "load_model", "preset_names",
           "save_checkpoint"]
