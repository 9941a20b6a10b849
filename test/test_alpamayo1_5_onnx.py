"""The Alpamayo 1.5 fixture on the onnxruntime backend, without navigation guidance.

The exported denoise step runs the releases' action-in projection (its Fourier time term), and
the exported prefill takes the 1.5 prompt (camera names, frame numbers, route span) as the
family plans it. ONNX Runtime has no reasoning decode, so it is compared with the torch backend
(which `test_alpamayo1_5_compat.py` checks against the reference) on the prompt alone.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vla_ros.model.alpamayo_release import BASE_VLM_ENV
from vla_ros.runtime.inputs import PolicyInputs
from vla_ros.runtime.policy import Policy

pytest.importorskip("onnxruntime")

FIXTURE = Path(__file__).parent / "fixtures" / "alpamayo1_5_tiny"
NAV = "Turn left onto Main Street in 40m"


def test_onnxruntime_runs_the_1_5_prompt_as_torch_does(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(BASE_VLM_ENV, str(FIXTURE / "base_vlm"))
    inputs = load_file(str(FIXTURE / "inputs.safetensors"))
    noise = load_file(str(FIXTURE / "reference.safetensors"))["noise"]
    ort = Policy.from_pretrained(FIXTURE / "model", backend="onnxruntime", max_samples=2,
                                 export_dir=tmp_path / "onnx")  # not beside the fixture
    ours = Policy.from_pretrained(FIXTURE / "model", max_samples=2)
    images = inputs["images"].permute(0, 2, 3, 1).numpy().reshape(3, 4, 64, 96, 3)
    for nav in (NAV, None):
        tick = PolicyInputs(images=images, history_xyz=inputs["ego_history_xyz"][0, 0].double().numpy(),
                            history_rot=inputs["ego_history_rot"][0, 0].double().numpy(),
                            camera_ids=tuple(inputs["camera_indices"].tolist()), task=nav)
        ctx_o, ctx_t = ort.prefill(tick, reasoning_budget=0), ours.prefill(tick, reasoning_budget=0)
        assert ctx_o.length == ctx_t.length and ctx_o.next_position == ctx_t.next_position
        torch.testing.assert_close(ort.velocity(ctx_o, noise, 0.3).float(), ours.velocity(ctx_t, noise, 0.3).float(),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(ort.denoise(ctx_o, noise=noise).float(), ours.denoise(ctx_t, noise=noise).float(),
                                   atol=1e-4, rtol=0)
