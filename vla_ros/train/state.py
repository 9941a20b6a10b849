"""Training checkpoints for `--resume`: weights, optimizer moments, step and RNG states.

Everything tensor-valued goes to one safetensors file (no pickles, as for shipped models), the
rest (step, param groups, numpy generator state, the run's options) to a JSON file beside it.
Written to a temporary name and renamed, so an interrupted save leaves the previous one intact.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "train_state.safetensors"
META = "train_state.json"


def save_state(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
               torch_gen: torch.Generator, np_gen: np.random.Generator, extra: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, st in opt["state"].items():
        for name, value in st.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"opt.{idx}.{name}"] = t.detach().contiguous().clone()
    tensors["rng.torch"] = torch_gen.get_state()
    meta = {"step": step, "param_groups": opt["param_groups"], "numpy_rng": np_gen.bit_generator.state, **extra}
    tmp_w, tmp_m = directory / (WEIGHTS + ".tmp"), directory / (META + ".tmp")
    save_file(tensors, str(tmp_w))
    tmp_m.write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")
    tmp_w.replace(directory / WEIGHTS)
    tmp_m.replace(directory / META)


def has_state(directory: Path) -> bool:
    return (directory / WEIGHTS).is_file() and (directory / META).is_file()


def load_state(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               torch_gen: torch.Generator, np_gen: np.random.Generator) -> dict[str, Any]:
    """Restores everything in place; returns the JSON metadata (with `step`)."""
    tensors = load_file(str(directory / WEIGHTS))
    meta = json.loads((directory / META).read_text(encoding="utf-8"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch_gen.set_state(tensors["rng.torch"])
    np_gen.bit_generator.state = meta["numpy_rng"]
    return meta
