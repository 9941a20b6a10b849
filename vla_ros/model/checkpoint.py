"""Checkpoint I/O: a local directory of

    config.json          VLAConfig (architecture, Qwen3-VL config, expert overrides, ...)
    model.safetensors    all weights (or model.safetensors.index.json + shards)
    tokenizer.json       the `tokenizers` tokenizer with the special tokens the config names
    action_stats.json    action normalization (mean/std per channel)
    README.md            model card

Only safetensors are read: pickled files (.bin/.pt/.pth/.ckpt/.pkl) can run code when loaded and
are refused. An Alpamayo-R1 release directory (config.json `model_type: alpamayo_r1`) is read
as it is by `vla_ros.model.alpamayo_release`. Loading compares every key and shape with the model built from config.json and
names the missing, unexpected and mismatched keys.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vla_ros.model.action_space import ActionStats
from vla_ros.model.build import build_model
from vla_ros.model.config import ModelConfigError, VLAConfig
from vla_ros.model.families import UnknownFamilyError
from vla_ros.model.text_tokenizer import TextTokenizer, TokenizerError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_LIST_LIMIT = 8


class CheckpointError(ValueError):
    """A checkpoint directory is missing, incomplete, corrupt or does not match its config."""


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_LIMIT])
    return shown + (f" (+{len(keys) - _LIST_LIMIT} more)" if len(keys) > _LIST_LIMIT else "")


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


def _weight_files(root: Path) -> list[Path]:
    single = root / "model.safetensors"
    index = root / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"'{index}' is not a valid safetensors index: {exc}") from exc
        files = sorted({root / f for f in weight_map.values()})
        missing = [str(f.name) for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"'{root}': shards named in the index are missing: {_names(missing)}")
        return files
    pickles = sorted(p.name for p in root.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(
            f"'{root}' holds only pickled weights ({_names(pickles)}); pickled checkpoints are refused because "
            "loading them can execute code. Convert them to model.safetensors.")
    raise CheckpointError(f"'{root}' has no model.safetensors")


def read_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as sf:
                for k in sf.keys():
                    shapes[k] = tuple(sf.get_slice(k).get_shape())
        except Exception as exc:  # safetensors raises SafetensorError / OSError on corrupt files
            raise CheckpointError(f"'{f}' is not a readable safetensors file: {exc}") from exc
    return shapes


def check_state_keys(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], where: str) -> None:
    """Raise CheckpointError naming missing, unexpected and shape-mismatched keys."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(f"{k} (file {list(found[k])}, model {list(expected[k])})"
                        for k in set(expected) & set(found) if tuple(found[k]) != tuple(expected[k]))
    problems = []
    if missing:
        problems.append(f"missing keys: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_names(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_names(mismatched)}")
    if problems:
        raise CheckpointError(f"'{where}' does not match its config.json: " + "; ".join(problems))


def load_config(path: str | Path) -> VLAConfig:
    """The VLAConfig of a checkpoint directory, vla_ros's own or an Alpamayo-R1 release (whose
    config.json is translated; its base VLM must resolve). Raises ModelConfigError naming the key."""
    from vla_ros.model.alpamayo_release import is_release_dir, release_config

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
    from vla_ros.model.alpamayo_release import is_release_dir, load_release

    if is_release_dir(root):  # NVIDIA's Alpamayo-R1 layout, read as it is
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
    files = _weight_files(root)
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
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    with torch.no_grad():
        for f in files:
            with safe_open(str(f), framework="pt", device="cpu") as sf:
                for k in sf.keys():
                    params[k].copy_(sf.get_tensor(k))
    return model.eval(), tokenizer
