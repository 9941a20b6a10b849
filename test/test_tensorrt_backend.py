"""TensorRT backend. The engine cache's rebuild rules are plain Python and run everywhere; the
engines themselves need TensorRT and a CUDA GPU and are skipped, visibly, without them."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from vla_ros.runtime import Policy
from vla_ros.runtime.backends.engine_cache import EngineKey, engine_path, load_or_build
from vla_ros.runtime.tools.synthetic import synthetic_inputs

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
needs_trt = pytest.mark.skipif(not (HAS_TRT and torch.cuda.is_available()),
                               reason="needs NVIDIA TensorRT (python package 'tensorrt') and a CUDA GPU")


def _key(**kw) -> EngineKey:
    base = dict(graph="denoise_step", onnx_sha256="a" * 64, model_hash="b" * 64, trt_version="10.0", gpu="GPU",
                compute_capability="9.0", precision="bf16+strongly_typed",
                profile=(("x", (1, 64, 2), (1, 64, 2), (8, 64, 2)),))
    base.update(kw)
    return EngineKey(**base)


def test_engine_cache_rebuilds_on_any_key_change_or_corruption(tmp_path):
    builds: list[str] = []

    def build(tag: str):
        def run() -> bytes:
            builds.append(tag)
            return f"engine:{tag}".encode()
        return run

    def deserialize(blob: bytes):
        return blob.decode() if blob.startswith(b"engine:") else None  # what TensorRT does: None if unreadable

    key = _key()
    assert load_or_build(tmp_path, key, build("1"), deserialize) == ("engine:1", True)
    assert load_or_build(tmp_path, key, build("2"), deserialize) == ("engine:1", False)  # cached
    for changed in (_key(trt_version="10.1"), _key(gpu="Other"), _key(model_hash="c" * 64),
                    _key(profile=(("x", (1, 64, 2), (2, 64, 2), (8, 64, 2)),)), _key(precision="fp16+strongly_typed")):
        assert engine_path(tmp_path, changed) != engine_path(tmp_path, key)
        assert load_or_build(tmp_path, changed, build("k"), deserialize)[1] is True
    engine_path(tmp_path, key).write_bytes(b"garbage")  # corrupt engine file
    assert load_or_build(tmp_path, key, build("3"), deserialize) == ("engine:3", True)
    meta = engine_path(tmp_path, key).with_suffix(".json")
    meta.write_text(json.dumps({"graph": "other"}))  # sidecar from something else
    assert load_or_build(tmp_path, key, build("4"), deserialize) == ("engine:4", True)
    assert builds == ["1", "k", "k", "k", "k", "k", "3", "4"]


@pytest.mark.skipif(HAS_TRT, reason="checks the error raised where TensorRT is not installed")
def test_missing_tensorrt_is_a_specific_error():
    with pytest.raises(ValueError, match="backend 'tensorrt' needs the 'tensorrt' Python package"):
        Policy.from_pretrained("random:tiny", backend="tensorrt", device="cuda")


@needs_trt
def test_tensorrt_fp32_engines_match_torch(tmp_path):
    pol = Policy.from_pretrained("random:tiny", backend="tensorrt", device="cuda", dtype="fp32",
                                 export_dir=tmp_path / "export")
    ref = Policy.from_pretrained("random:tiny", device="cpu", dtype="float32")
    tick = synthetic_inputs(0, height=96, width=224)
    noise = torch.randn(1, 64, 2, generator=torch.Generator().manual_seed(0))
    out, want = pol.act(tick, noise=noise), ref.act(tick, noise=noise)
    np.testing.assert_allclose(out.xyz, want.xyz, atol=1e-3, rtol=0)
    again = pol.act(tick, noise=noise)  # replayed CUDA graph
    np.testing.assert_array_equal(again.xyz, out.xyz)
    assert set(pol.backend.rebuilt) == {"vision", "prefill", "denoise_step"}
    pol2 = Policy.from_pretrained("random:tiny", backend="tensorrt", device="cuda", dtype="fp32",
                                  export_dir=tmp_path / "export")
    assert not any(pol2.backend.rebuilt.values())  # engines came from the cache


@needs_trt
def test_tensorrt_bf16_parity_within_tolerance(tmp_path, monkeypatch):
    from vla_ros.runtime.tools.parity import run_parity

    monkeypatch.setenv("VLA_ROS_CACHE", str(tmp_path / "cache"))
    report = run_parity("random:tiny", backend="tensorrt", device="cuda", dtype="bf16")
    assert report["passed"], report
