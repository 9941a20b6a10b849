"""ONNX export of random:tiny (fp32, CPU): every graph equals torch, the manifest describes the
files, external data works, and a mismatched or corrupt export is refused (or rebuilt in the cache)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from vla_ros.runtime import Policy  # noqa: E402
from vla_ros.runtime.export.onnx_export import (CorruptExportError, ExportError, ManifestMismatchError,  # noqa: E402
                                                default_export_dir, ensure_export, export_onnx, model_hash, read_manifest)
from vla_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend, ProviderUnavailableError  # noqa: E402
from vla_ros.runtime.backends.protocol import BackendError  # noqa: E402
from vla_ros.runtime.tools.synthetic import synthetic_inputs  # noqa: E402

HW = dict(height=96, width=224)  # the tiny model's input size


@pytest.fixture(scope="module")
def torch_policy() -> Policy:
    return Policy.from_pretrained("random:tiny", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, torch_policy):
    out = tmp_path_factory.mktemp("export") / "tiny"
    export_onnx(torch_policy.model, out, model_name="random:tiny")
    return out


@pytest.fixture(scope="module")
def ort_policy(export_dir) -> Policy:
    return Policy.from_pretrained("random:tiny", backend="onnxruntime", export_dir=export_dir, threads=1)


@pytest.fixture(scope="module")
def tick():
    return synthetic_inputs(0, speed=6.0, yaw_rate=0.1, **HW)


def test_manifest_describes_the_export(export_dir, torch_policy):
    m = read_manifest(export_dir)
    assert m["model_hash"] == model_hash(torch_policy.model) and m["dtype"] == "fp32" and m["opset"] == 17
    assert set(m["graphs"]) == {"embed", "vision", "prefill", "denoise_step"}
    step = m["graphs"]["denoise_step"]
    names = [i["name"] for i in step["inputs"]]
    assert names == ["x", "t", "dt", "prefix_keys", "prefix_values", "prefix_mask", "suffix_positions"]
    shapes = {i["name"]: i["shape"] for i in step["inputs"] + step["outputs"]}
    assert shapes["x"] == ["samples", 64, 2] and shapes["prefix_keys"] == [4, 2, "prefix", 64]
    assert shapes["velocity"] == ["samples", 64, 2]
    assert m["graphs"]["prefill"]["outputs"][0]["shape"] == [4, 2, "prefix", 64]
    for g in m["graphs"].values():
        assert (export_dir / g["file"]).stat().st_size == g["bytes"] and g["external_data"] == []


def test_vision_graph_equals_torch(ort_policy, torch_policy, tick):
    images = np.asarray(tick.images).reshape(-1, HW["height"], HW["width"], 3)[:3]
    pixels, grid = torch_policy.model.image_preprocessor(images)
    with torch.inference_mode():
        ref = torch_policy.model.vlm.model.get_image_features(pixels, grid)
    tokens, deep = ort_policy.backend.vision_features(pixels.view(3, -1, pixels.shape[-1]).numpy(), tuple(int(v) for v in grid[0]))
    np.testing.assert_allclose(tokens, torch.stack(ref.pooler_output).numpy(), atol=2e-5, rtol=0)
    np.testing.assert_allclose(deep, torch.stack([torch.stack(d) for d in ref.deepstack_features]).numpy(), atol=2e-5, rtol=0)


def test_prefill_and_denoise_graphs_equal_torch(ort_policy, torch_policy, tick):
    ct, co = torch_policy.prefill(tick), ort_policy.prefill(tick)
    assert (co.length, co.next_position) == (ct.length, ct.next_position)  # prefix 533: traced with 37
    k, v = ort_policy.backend.prefix_kv()
    kt = torch.stack([b[0, :, :ct.length] for b in torch_policy.backend.kv.keys]).numpy()
    vt = torch.stack([b[0, :, :ct.length] for b in torch_policy.backend.kv.values]).numpy()
    np.testing.assert_allclose(k, kt, atol=5e-5, rtol=0)
    np.testing.assert_allclose(v, vt, atol=5e-5, rtol=0)
    torch.testing.assert_close(co.logits, ct.logits, atol=1e-4, rtol=0)
    x = torch.randn(3, 64, 2, generator=torch.Generator().manual_seed(0))  # 3 samples: traced with 2
    torch.testing.assert_close(ort_policy.velocity(co, x, 0.37), torch_policy.velocity(ct, x, 0.37), atol=1e-5, rtol=0)
    noise = torch.randn(2, 64, 2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ort_policy.denoise(co, noise=noise), torch_policy.denoise(ct, noise=noise), atol=1e-4, rtol=0)


def test_full_tick_equals_torch(ort_policy, torch_policy, tick):
    noise = torch.randn(1, 64, 2, generator=torch.Generator().manual_seed(2))
    out, ref = ort_policy.act(tick, noise=noise), torch_policy.act(tick, noise=noise)
    assert type(out) is type(ref) and out.xyz.shape == ref.xyz.shape == (1, 64, 3)
    np.testing.assert_allclose(out.xyz, ref.xyz, atol=1e-4, rtol=0)
    np.testing.assert_allclose(out.actions, ref.actions, atol=1e-4, rtol=0)
    assert {"vision_ms", "prefill_ms", "denoise_ms", "total_ms"} <= set(out.timings.as_dict())
    nxt = ort_policy.act(synthetic_inputs(1, speed=6.0, yaw_rate=0.1, **HW), noise=noise)
    assert nxt.vision_encoded == 4 and nxt.vision_reused == 12  # only the newest frame per camera
    with pytest.raises(BackendError, match="torch backend only"):
        ort_policy.act(tick, reasoning=True)


def test_dispatch_through_policy(export_dir):
    pol = Policy.from_pretrained("random:tiny", backend="onnxruntime", export_dir=export_dir, threads=1)
    assert isinstance(pol.backend, OnnxRuntimeBackend) and pol.backend.providers == ["CPUExecutionProvider"]


def test_mismatched_and_corrupt_exports_are_refused(export_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(export_dir, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["model_hash"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestMismatchError, match="another model"):
        Policy.from_pretrained("random:tiny", backend="onnxruntime", export_dir=other)
    broken = tmp_path / "broken"
    shutil.copytree(export_dir, broken)
    data = (broken / "denoise_step.onnx").read_bytes()
    (broken / "denoise_step.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptExportError, match="denoise_step.onnx"):
        Policy.from_pretrained("random:tiny", backend="onnxruntime", export_dir=broken)
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(ExportError, match="not valid JSON"):
        Policy.from_pretrained("random:tiny", backend="onnxruntime", export_dir=broken)


def test_cache_is_rebuilt_when_corrupt(torch_policy, export_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("VLA_ROS_CACHE", str(tmp_path / "cache"))
    model = torch_policy.model
    mhash = model_hash(model)
    root = default_export_dir("random:tiny", mhash, "fp32", 17)
    assert root.is_relative_to(tmp_path / "cache") and mhash[:16] in root.name
    shutil.copytree(export_dir, root)  # as if exported earlier
    first = read_manifest(root)
    assert ensure_export(model, "random:tiny")[1] == first  # reused, not re-exported
    (root / "prefill.onnx").write_bytes(b"garbage")
    root2, again = ensure_export(model, "random:tiny")  # our cache: rebuilt, same content
    assert root2 == root and again["graphs"]["prefill"]["sha256"] == first["graphs"]["prefill"]["sha256"]


def test_external_data(torch_policy, tmp_path):
    out = tmp_path / "ext"
    m = export_onnx(torch_policy.model, out, external_threshold=0)  # force: as a > 2 GB model would be
    for name, g in m["graphs"].items():
        assert g["external_data"] and (out / f"{name}.onnx.data").is_file()
    sess = ort.InferenceSession(str(out / "embed.onnx"), providers=["CPUExecutionProvider"])
    (emb,) = sess.run(None, {"input_ids": np.array([[1, 2, 3]], dtype=np.int64)})
    ref = torch_policy.model.vlm.model.language_model.embed_tokens.weight[[1, 2, 3]].detach().numpy()
    np.testing.assert_array_equal(emb[0], ref)


def test_missing_provider_is_a_specific_error():
    with pytest.raises(ProviderUnavailableError, match="TensorrtExecutionProvider"):
        Policy.from_pretrained("random:tiny", backend="onnxruntime", providers=["TensorrtExecutionProvider"])
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ProviderUnavailableError, match="onnxruntime-gpu"):
            Policy.from_pretrained("random:tiny", backend="onnxruntime", device="cuda")


@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers() or not torch.cuda.is_available(),
                    reason="needs onnxruntime-gpu with the CUDA execution provider and a GPU")
def test_cuda_ep_full_tick_keeps_kv_on_device(export_dir, torch_policy, tick):
    pol = Policy.from_pretrained("random:tiny", backend="onnxruntime", device="cuda", export_dir=export_dir)
    assert pol.backend.io_device == "cuda"
    noise = torch.randn(1, 64, 2, generator=torch.Generator().manual_seed(2))
    out, ref = pol.act(tick, noise=noise), torch_policy.act(tick, noise=noise)
    assert pol.backend._kv[0].device_name() == "cuda"
    np.testing.assert_allclose(out.xyz, ref.xyz, atol=1e-3, rtol=0)
