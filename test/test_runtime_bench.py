"""`vla-ros bench runtime`: the JSON fields the issue names, honest equivalence figure."""
from __future__ import annotations

import json

import pytest

from vla_ros.cli import main


def test_bench_runtime_json(capsys):
    rc = main(["bench", "runtime", "--model", "random:tiny", "--steps", "2", "--samples", "2", "--repeats", "1",
               "--reasoning-tokens", "2", "--image-size", "96x224", "--json"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    for key in ("prefill_ms", "baseline_prefill_ms", "denoise_ms", "baseline_denoise_ms", "speedup", "max_abs_diff",
                "device", "dtype", "steps", "samples", "step_flops", "denoise_gflops", "matmul_gflops",
                "reasoning_ms_per_token", "baseline_reasoning_ms_per_token", "samples_cost_ratio"):
        assert key in r, key
    assert (r["device"], r["dtype"], r["steps"], r["samples"]) == ("cpu", "float32", 2, 2)
    assert r["speedup"] == pytest.approx(r["baseline_denoise_ms"] / r["denoise_ms"])
    assert r["max_abs_diff"] <= 1e-4
    assert r["step_flops"] > 0 and r["matmul_gflops"] > 0


def test_bench_bad_arguments(capsys):
    assert main(["bench", "runtime", "--steps", "0"]) == 2
    assert "must be >= 1" in capsys.readouterr().err
    assert main(["bench", "runtime", "--model", "random:nope", "--repeats", "1"]) == 2
    assert "unknown model preset" in capsys.readouterr().err
