"""Model families: one file per architecture, chosen by `architecture` in config.json.

A family module (`vla_ros/model/families/<name>.py`) defines one `torch.nn.Module` class decorated
with `@register_family("<name>")` that implements the seam in `vla_ros.model.family.Family`:
how the prefix is embedded and prefilled into the K/V cache, how the suffix (noisy actions and
flow time) is embedded, the layers it runs with the attention pattern between prefix and suffix,
and how actions decode to the output. Everything else (buffers, caches, the flow schedule, CUDA
graphs, timings, backends) is the runtime's and is shared by every family.

`family_class(name)` imports `vla_ros.model.families.<name>` on first use, so adding a family is
adding its file; a family defined elsewhere (a test, a user's package) registers itself by
importing its module before the model is built. This package imports neither torch nor
transformers: config validation stays cheap.
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

_REGISTRY: dict[str, type] = {}


class UnknownFamilyError(ValueError):
    """No family of this name is registered or shipped."""


def register_family(name: str) -> Callable[[type], type]:
    """Class decorator: `@register_family("kv_expert") class KVExpertVLA(nn.Module): ...`."""
    def add(cls: type) -> type:
        other = _REGISTRY.get(name)
        if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
            raise ValueError(f"model family {name!r} is already registered by {other.__module__}.{other.__qualname__}")
        cls.architecture = name
        _REGISTRY[name] = cls
        return cls
    return add


def shipped_families() -> list[str]:
    """Families that have a module in this package (not yet imported)."""
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_"))


def family_names() -> list[str]:
    return sorted(set(_REGISTRY) | set(shipped_families()))


def is_known(name: str) -> bool:
    return name in _REGISTRY or (name.isidentifier() and name in shipped_families())


def family_class(name: str) -> Any:
    """The registered class of family `name`, importing its shipped module if needed."""
    if name not in _REGISTRY and is_known(name):
        importlib.import_module(f"{__name__}.{name}")
    if name not in _REGISTRY:
        raise UnknownFamilyError(f"unknown model family {name!r}; known: {', '.join(family_names())}")
    return _REGISTRY[name]
