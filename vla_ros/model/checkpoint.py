"""Checkpoint I/O: a local directory of

    config.json          VLAConfig (architecture, Qwen3-VL config, expert overrides, ...)
    model.safetensors    all weights (or model.safetensors.index.json + shards)
    tokenizer.json       the `tokenizers` tokenizer with the special tokens the config names
    action_stats.json    action normalization (mean/std per channel)
    README.md            model card

Only safetensors are read: pickled files (.bin/.pt/.pth/.ckpt/.pkl) can run code when loaded and
are refused. An Alpamayo-R1 or Alpamayo 1.5 release directory (config.json `model_type:
alpamayo_r1` / `alpamayo1_5`) is read as it is by `vla_ros.model.alpamayo_release`. Loading compares every key and shape with the model built from config.json and
names the missing, unexpected and mismatched keys.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from vla_ros.model.action_space import ActionStats
from vla_ros.model.alpamayo_release import is_release_dir, load_release, release_config
from vla_ros.model.build import build_model
from vla_ros.model.config import ModelConfigError, VLAConfig
from vla_ros.model.families import UnknownFamilyError
from vla_ros.model.safetensors_io import (  # noqa: F401 - CheckpointError and PICKLE_SUFFIXES are part of this module's API
    PICKLE_SUFFIXES,
    CheckpointError,
    check_state_keys,
    copy_weights,
    read_shapes,
    weight_files,
)
from vla_ros.model.text_tokenizer import TextTokenizer, TokenizerError

def save_checkpoint(model: torch.nn.Module, tokenizer: TextTokenizer, path: str | Path, card: str | None = None) -> Path:
    """Write the checkpoint directory (created if needed). Returns its path."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(model.config.to_json() + "\n", encoding="utf-8")
    # Own copies: the runtime may have re-pointed weights at views of fused tensors (shared storage).
    state = {k: (v.detach().clone() if v.device.type == "cpu" else v.detach().to("cpu")).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt", "architecture": model.config.architecture})
    tokenizer.save(out / "tokenizer.json")
    (out / "action_stats.json").write_text(model.stats.to_json() + "\n", encoding="utf-8")
    n = model.num_parameters()
    (out / "README.md").write_text(card or (
        f"# {model.config.name or 'vla_ros model'}\n\nArchitecture `{model.config.architecture}`, "
        f"{n / 1e6:.2f}M parameters. Saved by vla_ros.model.checkpoint.\n"), encoding="utf-8")
    return out


def load_config(path: str | Path) -> VLAConfig:
    """The VLAConfig of a checkpoint directory, vla_ros's own or an Alpamayo release (whose
    config.json is translated; its base VLM must resolve). Raises ModelConfigError naming the key."""

    root = Path(path)
    if is_release_dir(root):
        return release_config(root)[0]
    return VLAConfig.load(root / "config.json")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> tuple[torch.nn.Module, TextTokenizer]:
    root = Path(path)
    if root.is_file():
        if root.suffix in PICKLE_SUFFIXES:
            raise CheckpointError(f"'{root}' is a pickled file; pickled checkpoints are refused (use safetensors)")
        raise CheckpointError(f"'{root}' is a file; a checkpoint is a directory with config.json and model.safetensors")
    if not root.is_dir():
        raise CheckpointError(f"checkpoint directory '{root}' does not exist")

    if is_release_dir(root):  # NVIDIA's Alpamayo-R1 / 1.5 layout, read as it is
        return load_release(root, device=device, dtype=dtype)
    for name in ("config.json", "tokenizer.json", "action_stats.json"):
        if not (root / name).is_file():
            raise CheckpointError(f"'{root}' is missing {name}")
    try:
        config = VLAConfig.load(root / "config.json")
    except ModelConfigError as exc:
        raise CheckpointError(f"'{root / 'config.json'}': {exc}") from exc
    try:
        stats = ActionStats.load(root / "action_stats.json")
        tokenizer = TextTokenizer.load(root / "tokenizer.json", config.prompt, config.prompt.traj_tokens or config.history.bins)
    except (ValueError, TokenizerError) as exc:
        raise CheckpointError(str(exc)) from exc
    files = weight_files(root)
    found = read_shapes(files)
    try:
        model = build_model(config, stats, device=device, dtype=dtype, seed=None)  # weights come from the file
    except (ModelConfigError, UnknownFamilyError) as exc:
        raise CheckpointError(f"'{root / 'config.json'}': {exc}") from exc
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_state_keys(expected, found, str(root))
    vocab = config.vlm["text_config"].get("vocab_size", 0)
    if tokenizer.vocab_size > vocab:
        raise CheckpointError(f"tokenizer.json has {tokenizer.vocab_size} tokens but the model's vocab_size is {vocab}")
    copy_weights(model, files)
    return model.eval(), tokenizer
