"""Building a model on a device in a dtype, with seeded random weights or none at all."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from transformers.initialization import no_init_weights

from vla_ros.model.action_space import ActionStats
from vla_ros.model.config import VLAConfig
from vla_ros.model.families import family_class

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Parameters are created in `dtype`; buffers transformers builds explicitly in float32
    (rotary inverse frequencies) stay float32, as with from_pretrained(dtype=...)."""
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(prev)


def cast_parameters(model: torch.nn.Module, device: str | torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Move the model and cast its parameters only: `model.to(bfloat16)` would also round the
    float32 rotary inverse frequencies, which shifts rotary angles by radians at long positions."""
    model.to(device=device)
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data.to(dtype)
    return model


def build_model(config: VLAConfig, stats: ActionStats | None = None, *, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, seed: int | None = 0) -> torch.nn.Module:
    """The network of the family `config.architecture` names. seed=None: no initialization
    (weights are loaded afterwards). Otherwise the same seed, device and dtype always give the
    same weights."""
    family = family_class(config.architecture)
    dev = torch.device(device)
    if seed is None:
        with torch.device(dev), default_dtype(dtype), no_init_weights():
            return family(config, stats).eval()
    fork = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork, device_type=dev.type if dev.type != "cpu" else "cuda"):
        torch.manual_seed(seed)
        with torch.device(dev), default_dtype(dtype):
            model = family(config, stats)
    return model.eval()
