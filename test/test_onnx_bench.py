"""`vla-ros bench runtime --backend onnxruntime`: runs and reports both backends from one run."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")

from vla_ros.cli import main  # noqa: E402


def test_bench_runtime_onnxruntime_json(tmp_path_factory, monkeypatch, capsys):
    # one export cache per pytest session, shared by the test files that need an export
    cache = tmp_path_factory.getbasetemp() / "vla_ros_cache"
    monkeypatch.setenv("VLA_ROS_CACHE", str(cache))
    argv = ["bench", "runtime", "--backend", "onnxruntime", "--steps", "2", "--repeats", "1", "--threads", "1", "--json"]
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["backend"] == "onnxruntime" and r["ref"] == "torch" and r["providers"] == ["CPUExecutionProvider"]
    for key in ("prefill_ms", "denoise_ms", "step_ms", "torch_prefill_ms", "torch_denoise_ms", "speedup"):
        assert r[key] > 0, key
    assert r["max_abs_diff"] < 1e-4


def test_bench_unknown_backend_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "runtime", "--backend", "nope"])


def test_bench_runtime_onnxruntime_reports_one_and_two_threads(tmp_path_factory, monkeypatch, capsys):
    monkeypatch.setenv("VLA_ROS_CACHE", str(tmp_path_factory.getbasetemp() / "vla_ros_cache"))
    assert main(["bench", "runtime", "--backend", "onnxruntime", "--steps", "2", "--repeats", "1", "--json"]) == 0
    runs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [r["backend_threads"] for r in runs] == [1, 2]
    assert all(r["denoise_ms"] > 0 and r["max_abs_diff"] < 1e-4 for r in runs)
