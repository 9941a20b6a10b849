"""Running a VLA policy: prefill -> context, reason, denoise, act (torch backend; no ROS).

Names are imported lazily so that `vla_ros.runtime.commands.bench_command` (imported by
`vla-ros --help`) does not pull in torch and transformers.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Context": "vla_ros.runtime.context",
    "StaleContextError": "vla_ros.runtime.context",
    "NonFiniteOutputError": "vla_ros.runtime.output",
    "PolicyInputError": "vla_ros.runtime.inputs",
    "PolicyInputs": "vla_ros.runtime.inputs",
    "PolicyOutput": "vla_ros.runtime.output",
    "Timings": "vla_ros.runtime.output",
    "KVCapacityError": "vla_ros.runtime.kv_buffers",
    "Policy": "vla_ros.runtime.policy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vla_ros.runtime' has no attribute {name!r}")
