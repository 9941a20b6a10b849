"""ONNX export of the joint_mot family (LeRobot pi0 / pi0.5) and the ONNX Runtime backend running it.

`vla-ros export` on each golden fixture directory writes vision / prefill / denoise_step graphs;
ONNX Runtime (CPU, fp32) must give LeRobot's recorded velocity at every flow step and LeRobot's
unnormalized chunk within the compatibility tolerance (TOL, 1e-4), equal the torch runtime stage by
stage within the fp32 parity tolerances, apply a real-time-chunking guide as LeRobot does, and never
write into the LeRobot directory.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from test_lerobot_compat import TOL, VARIANTS, Replay  # noqa: E402
from vla_ros.cli import main  # noqa: E402
from vla_ros.runtime import Policy  # noqa: E402
from vla_ros.runtime.backends.protocol import BackendError  # noqa: E402
from vla_ros.runtime.export.onnx_export import ManifestMismatchError, read_manifest  # noqa: E402
from vla_ros.runtime.tools.parity import TOLERANCES, run_parity  # noqa: E402
from vla_ros.runtime.rtc import ChunkGuide  # noqa: E402

ACTION_DIM = 6  # the fixtures' robot action dimension (the model pads to max_action_dim)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Each fixture exported once through the CLI, as a user would."""
    out = {}
    for variant, path in VARIANTS.items():
        d = tmp_path_factory.mktemp(f"onnx_{variant}")
        assert main(["export", "--model", str(path), "--format", "onnx", "--out", str(d)]) == 0
        out[variant] = d
    return out


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def case(request, exports):
    variant = request.param
    replay = Replay(variant)
    ort = Policy.from_pretrained(VARIANTS[variant], backend="onnxruntime", export_dir=exports[variant], threads=1,
                                 max_samples=2)
    return variant, replay, ort


def test_manifest_describes_the_joint_mot_graphs(exports):
    for variant, d in exports.items():
        m = read_manifest(d)
        assert (m["architecture"], m["variant"], m["dtype"]) == ("joint_mot", variant, "fp32")
        assert set(m["graphs"]) == {"vision", "prefill", "denoise_step"}
        io = {g: {i["name"]: i["shape"] for i in m["graphs"][g]["inputs"] + m["graphs"][g]["outputs"]}
              for g in m["graphs"]}
        assert io["vision"] == {"pixels": ["images", 3, 56, 56], "image_embeds": ["images", 16, 64]}
        prefill = {"image_embeds": [1, "image_tokens", 64], "input_ids": ["text_tokens"],
                   "prefix_keys": [2, 1, "prefix", 16], "prefix_values": [2, 1, "prefix", 16]}
        if variant == "pi0":  # the state token is a stream of the prefill
            prefill["state"] = [6]
        assert io["prefill"] == prefill
        assert [i["name"] for i in m["graphs"]["denoise_step"]["inputs"]] == [
            "x", "t", "dt", "prefix_keys", "prefix_values", "suffix_positions"]
        assert io["denoise_step"]["x"] == io["denoise_step"]["velocity"] == ["samples", 50, 32]


def test_every_flow_step_and_the_chunk_are_lerobots(case):
    variant, replay, ort = case
    r = replay.ref
    for b in range(replay.meta["batch"]):
        ctx = ort.prefill(replay.inputs(b))
        for k in range(r["flow.t"].shape[0]):
            v = ort.velocity(ctx, r["flow.x"][k][b:b + 1], float(r["flow.t"][k, b]))
            err = float((v[0] - r["flow.v"][k][b]).abs().max())
            assert err <= TOL, f"{variant} sample {b} step {k}: |v - LeRobot| = {err:.2e}"
        out = ort.act(replay.inputs(b), noise=r["flow.noise"][b:b + 1])
        err = float(np.abs(out.actions[0] - r["output.actions"][b].numpy()).max())
        assert err <= TOL, f"{variant} sample {b}: |actions - LeRobot| = {err:.2e}"
        assert float(np.abs(out.raw_actions[0] - r["flow.x"][-1][b].numpy()).max()) <= TOL


def test_samples_share_the_prefix(case):
    variant, replay, ort = case
    r = replay.ref
    noise = torch.cat([r["flow.noise"][0:1], torch.randn(1, *r["flow.noise"].shape[1:],
                                                          generator=torch.Generator().manual_seed(1))])
    out = ort.act(replay.inputs(0), noise=noise)
    ref = replay.policy.act(replay.inputs(0), noise=noise)
    assert np.abs(out.actions[0] - r["output.actions"][0].numpy()).max() <= TOL
    assert np.abs(out.actions - ref.actions).max() <= TOL
    assert np.abs(out.actions[1] - out.actions[0]).max() > 1e-2


def test_the_rtc_guide_is_applied_like_lerobot(case):
    variant, replay, ort = case
    rtc = load_file(str(VARIANTS[variant] / "rtc.safetensors"))
    meta = json.loads((VARIANTS[variant] / "rtc.json").read_text())
    for name in ("linear", "exp"):
        c = meta["cases"][name]
        for b in range(2):
            guide = ChunkGuide(rtc[f"{name}.leftover"][b].numpy(), inference_delay=c["inference_delay"],
                               execution_horizon=c["execution_horizon"], schedule=c["schedule"].lower(),
                               max_guidance_weight=c["max_guidance_weight"])
            out = ort.act(replay.inputs(b), noise=rtc["noise"][b:b + 1], guide=guide)
            norm = float(np.abs(out.raw_actions[0, :, :ACTION_DIM] - rtc[f"{name}.actions_normalized"][b].numpy()).max())
            phys = float(np.abs(out.actions[0] - rtc[f"{name}.actions"][b].numpy()).max())
            assert norm <= TOL and phys <= TOL, f"{variant} {name} sample {b}: {norm:.2e} normalized, {phys:.2e}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_onnxruntime_equals_torch_stage_by_stage(variant, exports):
    r = run_parity(str(VARIANTS[variant]), backend="onnxruntime", samples=2, threads=1, export_dir=exports[variant])
    assert r["passed"] and r["stages"] == ["vision", "prefix_kv", "velocity", "actions"]
    tol = TOLERANCES["fp32"]
    for stage in ("vision", "prefix_kv", "velocity"):
        assert 0 <= r[f"{stage}_max_abs"] <= tol[stage], stage
    assert r["actions_max_abs"] <= 1e-4 and r["velocity_max_abs"] < 1e-5


def test_an_export_of_another_model_is_refused(exports):
    with pytest.raises(ManifestMismatchError, match="model_hash"):
        Policy.from_pretrained(VARIANTS["pi05"], backend="onnxruntime", export_dir=exports["pi0"], threads=1)


def test_tensorrt_refuses_a_lerobot_directory_before_exporting():
    with pytest.raises(BackendError, match="tensorrt backend covers the kv_expert family only"):
        Policy.from_pretrained(VARIANTS["pi0"], backend="tensorrt", device="cuda")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_parity_and_bench_commands_leave_the_lerobot_directory_as_it_is(variant, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VLA_ROS_CACHE", str(tmp_path))
    before = sorted(p.name for p in VARIANTS[variant].iterdir())
    assert main(["parity", "--model", str(VARIANTS[variant]), "--backend", "onnxruntime", "--threads", "1",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"]
    assert main(["bench", "runtime", "--model", str(VARIANTS[variant]), "--backend", "onnxruntime", "--threads", "1",
                 "--steps", "2", "--repeats", "1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["family"], r["backend"], r["steps"]) == ("joint_mot", "onnxruntime", 2)
    assert r["max_abs_diff"] <= TOL and r["denoise_ms"] > 0
    assert len(list((tmp_path / "onnx").iterdir())) == 1  # the export was cached (once) by model hash
    assert sorted(p.name for p in VARIANTS[variant].iterdir()) == before


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_middle_expert_is_a_prefill_stream_of_the_export(variant, tmp_path):
    """n experts (InternVLA-A1's shape: a middle stream of 5 learned tokens between prefix and
    actions) export as they run: ORT equals the torch runtime on a random three-expert model."""
    from test_joint_mot_experts import three_experts
    from vla_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from vla_ros.runtime.export.onnx_export import export_onnx
    from vla_ros.runtime.tools.synthetic import synthetic_robot_inputs

    model, tok = three_experts(variant)
    manifest = export_onnx(model, tmp_path, model_name="three-experts")
    assert manifest["dims"]["middle_tokens"] == 5
    ort = Policy(model, tok, OnnxRuntimeBackend(model, tok, tmp_path, manifest, threads=1))
    ref = Policy(model, tok)
    h, w = ref.image_size_hw
    tick = synthetic_robot_inputs(3, cameras=model.config.image.num_cameras, height=h, width=w,
                                  state_dim=model.spec.state_dim)
    noise = torch.randn(2, *ref.model.action_shape, generator=torch.Generator().manual_seed(0))
    co, cr = ort.prefill(tick), ref.prefill(tick)
    assert co.length == cr.length == cr.next_position
    k, v = ort.backend.prefix_kv()
    kr, vr = ref.backend.prefix_kv(cr.length)
    assert np.abs(k - kr).max() <= TOLERANCES["fp32"]["prefix_kv"] and np.abs(v - vr).max() <= TOLERANCES["fp32"]["prefix_kv"]
    assert np.abs(ort.act(tick, noise=noise).actions - ref.act(tick, noise=noise).actions).max() <= TOL
