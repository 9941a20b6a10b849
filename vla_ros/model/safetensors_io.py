"""Reading safetensors checkpoints safely, for every checkpoint format vla_ros loads (its own,
an Alpamayo-R1 release, a LeRobot policy directory): the weight files of a directory (one file
or an index with shards; pickled weights refused), their key shapes without loading them, and
one error type that names missing, unexpected and mismatched keys."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_LIST_LIMIT = 8


class CheckpointError(ValueError):
    """A checkpoint directory is missing, incomplete, corrupt or does not match its config."""


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_LIMIT])
    return shown + (f" (+{len(keys) - _LIST_LIMIT} more)" if len(keys) > _LIST_LIMIT else "")


def weight_files(root: Path) -> list[Path]:
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


def copy_weights(model: torch.nn.Module, files: list[Path], skip: set[str] | frozenset[str] = frozenset()) -> None:
    """Copy every tensor of `files` that names a parameter or buffer of `model` into it, one
    tensor at a time from the memory-mapped files (cast to the model's dtype by the copy). Keys
    the model lacks, and those in `skip`, are not copied: callers vet the keys first with `check_state_keys`."""
    targets = dict(model.named_parameters())
    targets.update(dict(model.named_buffers()))
    with torch.no_grad():
        for f in files:
            with safe_open(str(f), framework="pt", device="cpu") as sf:
                for k in sf.keys():
                    if k in targets and k not in skip:
                        targets[k].copy_(sf.get_tensor(k))
