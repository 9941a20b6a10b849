"""CI parity: export -> ONNX Runtime full tick on the CPU, inside the fp32 tolerances."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")

from vla_ros.cli import main  # noqa: E402
from vla_ros.runtime.tools.parity import TOLERANCES, compare, run_parity  # noqa: E402


def test_export_then_onnxruntime_tick_within_fp32_tolerance(tmp_path_factory, monkeypatch, capsys):
    # one export cache per pytest session, shared by the test files that need an export
    cache = tmp_path_factory.getbasetemp() / "vla_ros_cache"
    monkeypatch.setenv("VLA_ROS_CACHE", str(cache))
    assert main(["parity", "--model", "random:tiny", "--backend", "onnxruntime", "--threads", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["backend"] == "onnxruntime" and report["ref"] == "torch"
    assert report["providers"] == ["CPUExecutionProvider"] and report["prefix_len"] > 500
    for stage, tol in TOLERANCES["fp32"].items():
        assert 0 <= report[f"{stage}_max_abs"] <= tol, stage
    assert report["trajectory_max_abs"] < 1e-4 and report["velocity_max_abs"] < 1e-5
    assert (cache / "onnx").is_dir()  # the export was cached by model hash


def test_compare_reports_max_rmse_and_worst_index():
    r = compare([[0.0, 1.0], [2.0, 3.0]], [[0.0, 1.5], [2.0, 3.0]])
    assert r == {"max_abs": 0.5, "rmse": 0.25, "worst_index": [0, 1]}
    assert compare([float("nan")], [0.0])["max_abs"] == float("inf")
    with pytest.raises(ValueError, match="shapes differ"):
        compare([1.0], [1.0, 2.0])


def test_parity_cli_errors(capsys):
    assert main(["parity", "--samples", "0"]) == 2
    assert "--samples" in capsys.readouterr().err
    with pytest.raises(ValueError, match="reference backend"):
        run_parity("random:tiny", ref="onnxruntime")
