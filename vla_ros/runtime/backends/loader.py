"""Backend name -> a `Policy` on that backend, with the model loaded as the backend needs it.

torch: the model on `device` in `dtype` (bfloat16 on CUDA, float32 on the CPU by default).
onnxruntime / tensorrt: the model in float32 on the CPU (the source of the export and of the
host-side pieces), its export made or reused (`vla_ros.runtime.export.onnx_export.ensure_export`),
and the backend opened on it; `dtype` is the export's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

BACKENDS = ("torch", "onnxruntime", "tensorrt")
# Keyword arguments that belong to the Policy rather than to an exported backend.
_POLICY_KWARGS = ("max_samples", "max_reasoning_tokens", "vision_cache_size", "nav_guidance_weight")


def load_policy(policy_cls: Any, path_or_preset: str | Path, *, device: str | torch.device = "cpu",
                dtype: str | torch.dtype | None = None, backend: str = "torch", **kwargs: Any) -> Any:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if backend == "torch":
        from vla_ros.model import load_model
        from vla_ros.model.build import parse_dtype

        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available")
        dt = parse_dtype(dtype) if dtype is not None else (torch.bfloat16 if dev.type == "cuda" else torch.float32)
        model, tokenizer = load_model(path_or_preset, device=dev, dtype=dt)
        return policy_cls(model, tokenizer, **kwargs)
    from vla_ros.model.lerobot_checkpoint import is_lerobot_policy_dir
    from vla_ros.runtime.backends.protocol import BackendError

    if backend == "tensorrt" and is_lerobot_policy_dir(path_or_preset):  # before any export is made
        raise BackendError(f"'{path_or_preset}' is a LeRobot pi0 / pi0.5 policy (joint_mot): the tensorrt backend "
                           "covers the kv_expert family only; use backend 'onnxruntime' (its TensorRT execution "
                           "provider on device 'cuda') or 'torch'")
    _refuse_nav_guidance(path_or_preset, backend, kwargs.get("nav_guidance_weight"))
    policy_kwargs = {k: kwargs.pop(k) for k in _POLICY_KWARGS if k in kwargs}
    kwargs.pop("cuda_graph", None)  # the exported backends capture their own loops (TensorRT) or none
    kwargs.pop("compile", None)
    if backend == "onnxruntime":
        from vla_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

        model, tokenizer, be = OnnxRuntimeBackend.load(path_or_preset, device=device, dtype=dtype, **kwargs)
    else:
        from vla_ros.runtime.backends.tensorrt_backend import TensorRTBackend

        kwargs.pop("threads", None)
        kwargs.pop("providers", None)
        model, tokenizer, be = TensorRTBackend.load(path_or_preset, device=device, dtype=dtype,
                                                    max_samples=policy_kwargs.get("max_samples", 8), **kwargs)
    return policy_cls(model, tokenizer, be, **policy_kwargs)


def _refuse_nav_guidance(path_or_preset: str | Path, backend: str, override: float | None) -> None:
    """Before any export is made: navigation guidance (Alpamayo 1.5's classifier-free guidance)
    needs a second prefix the exported graphs do not run. The Policy checks again."""
    from vla_ros.model.alpamayo_release import is_release_dir
    from vla_ros.model.checkpoint import load_config
    from vla_ros.runtime.backends.protocol import nav_guidance_unsupported

    weight = override
    if weight is None and is_release_dir(path_or_preset):
        weight = load_config(path_or_preset).flow.nav_guidance_weight
    if weight is not None and float(weight) != 1.0:
        raise nav_guidance_unsupported(f"'{path_or_preset}'", weight, backend)
