"""COMPATIBILITY with LeRobot 0.6.1's pi0 / pi0.5: the golden fixtures replayed through vla_ros.

Each fixture directory (test/fixtures/lerobot_{pi0,pi05}_tiny, written by LeRobot's own
save_pretrained; see test_lerobot_fixture.py for their integrity) is loaded as it is, the way
`--model DIR` loads it (`Policy.from_pretrained`), fed the recorded raw inputs (float images in
[0, 1], raw state, task text) and the recorded noise, one sample per tick; vla_ros's own
processors, prefix cache and denoising kernel must give LeRobot's velocities at every flow step
and LeRobot's unnormalized action chunk within TOL (fp32).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from vla_ros.model import CheckpointError, load_model
from vla_ros.model.families.joint_mot import JointMoT, resize_with_pad
from vla_ros.runtime import Policy, PolicyInputError
from vla_ros.runtime.inputs import PolicyInputs

FIXTURES = Path(__file__).parent / "fixtures"
VARIANTS = {"pi0": FIXTURES / "lerobot_pi0_tiny", "pi05": FIXTURES / "lerobot_pi05_tiny"}
TOL = 1e-4  # fp32; observed about 2e-6 (velocities) and 1.5e-6 (actions)


class Replay:
    def __init__(self, variant: str, dtype: str | None = None) -> None:
        self.path = VARIANTS[variant]
        self.ref = load_file(str(self.path / "reference.safetensors"))
        self.meta = json.loads((self.path / "reference.json").read_text())
        self.policy = Policy.from_pretrained(self.path, max_samples=2, dtype=dtype)

    def inputs(self, b: int, **changes) -> PolicyInputs:
        """Sample b's raw observation. PolicyInputs holds one image size for all cameras, so a camera
        recorded at another size than the first is resized here by the family's own resize_with_pad
        (what LeRobot applies to every camera; exact in float, and identity at the model's size)."""
        cams = [self.ref[f"input.{c}"][b:b + 1] for c in self.meta["cameras"]]
        if any(c.shape != cams[0].shape for c in cams):
            cams = [resize_with_pad(c, self.policy.image_size_hw[0]) for c in cams]
        images = torch.cat(cams).permute(0, 2, 3, 1)[:, None].numpy()  # (V, 1, H, W, 3) float in [0, 1]
        fields = dict(images=images, state=self.ref["input.observation.state"][b].numpy(), task=self.meta["tasks"][b])
        fields.update(changes)
        return PolicyInputs(**fields)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def replay(request) -> Replay:
    return Replay(request.param)


def test_directory_loads_as_the_family_with_lerobots_sizes(replay):
    model = replay.policy.model
    assert isinstance(model, JointMoT) and model.spec.variant == replay.meta["variant"]
    assert model.spec.cameras == tuple(replay.meta["cameras"])
    assert replay.policy.num_waypoints == replay.meta["chunk_size"]
    assert model.config.flow.direction == "data_to_noise" and model.config.flow.steps == replay.meta["num_inference_steps"]
    weights = load_file(str(replay.path / "model.safetensors"))
    state = model.state_dict()
    for k, v in state.items():  # every parameter came from LeRobot's file under its own name
        assert torch.equal(v, weights[k]), k
    assert set(weights) - set(state) == {k for k in weights if k.endswith("lm_head.weight")}


def test_images_are_resized_like_lerobot(replay):
    res = replay.policy.image_size_hw[0]
    for i, cam in enumerate(replay.meta["cameras"]):
        ours = resize_with_pad(replay.ref[f"input.{cam}"], res) * 2 - 1
        assert torch.allclose(ours, replay.ref[f"model.image.{i}"], atol=1e-6, rtol=0), cam


def test_prompt_tokens_are_lerobots(replay):
    model, tok = replay.policy.model, replay.policy.tokenizer
    ids, mask = replay.ref["batch.observation.language.tokens"], replay.ref["batch.observation.language.attention_mask"]
    for b, task in enumerate(replay.meta["tasks"]):
        state = model.normalize_state(replay.ref["input.observation.state"][b])
        assert torch.allclose(state, replay.ref["batch.observation.state"][b], atol=1e-6, rtol=0)
        ours = tok.encode_prompt(model.prompt(task, state), model.spec.tokenizer_max_length)
        assert ours == ids[b, :int(mask[b].sum())].tolist()


def test_every_flow_step_matches_lerobot(replay):
    r = replay.ref
    for b in range(replay.meta["batch"]):
        ctx = replay.policy.prefill(replay.inputs(b))
        for k in range(r["flow.t"].shape[0]):
            v = replay.policy.velocity(ctx, r["flow.x"][k][b:b + 1], float(r["flow.t"][k, b]))
            err = float((v[0] - r["flow.v"][k][b]).abs().max())
            assert err <= TOL, f"sample {b} step {k}: |v - LeRobot| = {err:.2e}"


def test_action_chunk_matches_lerobot(replay):
    r = replay.ref
    for b in range(replay.meta["batch"]):
        out = replay.policy.act(replay.inputs(b), noise=r["flow.noise"][b:b + 1])
        assert out.actions.shape == (1, replay.meta["chunk_size"], replay.meta["action_dim"])
        err = float(np.abs(out.actions[0] - r["output.actions"][b].numpy()).max())
        assert err <= TOL, f"sample {b}: |actions - LeRobot| = {err:.2e}"
        norm = float(np.abs(out.raw_actions[0] - r["flow.x"][-1][b].numpy()).max())
        assert norm <= TOL, f"sample {b}: normalized chunk differs by {norm:.2e}"
        assert len(out.action_names) == replay.meta["action_dim"]


def test_samples_share_the_prefix_and_stay_independent(replay):
    r = replay.ref
    noise = torch.cat([r["flow.noise"][0:1], torch.randn(1, *r["flow.noise"].shape[1:], generator=torch.Generator().manual_seed(1))])
    out = replay.policy.act(replay.inputs(0), noise=noise)
    assert np.abs(out.actions[0] - r["output.actions"][0].numpy()).max() <= TOL
    assert np.abs(out.actions[1] - out.actions[0]).max() > 1e-2  # other noise, other chunk


def test_robot_inputs_are_validated(replay):
    p, state_dim = replay.policy, replay.meta["state_dim"]
    with pytest.raises(PolicyInputError, match="state must have shape"):
        p.act(replay.inputs(0, state=np.zeros(state_dim + 1)))
    with pytest.raises(PolicyInputError, match="NaN"):
        p.act(replay.inputs(0, state=np.full(state_dim, np.nan)))
    with pytest.raises(PolicyInputError, match="task instruction"):
        p.act(replay.inputs(0, task=None))
    bad = replay.inputs(0).images * 2.0
    with pytest.raises(PolicyInputError, match=r"\[0, 1\]"):
        p.act(replay.inputs(0, images=bad))
    with pytest.raises(PolicyInputError, match="cameras"):
        p.act(replay.inputs(0, images=replay.inputs(0).images[:1]))


# ------------------------------------------------------------------ the loader's errors
def _copy(tmp_path: Path, variant: str = "pi0") -> Path:
    return Path(shutil.copytree(VARIANTS[variant], tmp_path / variant))


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_missing_and_unexpected_weights_are_named(tmp_path):
    d = _copy(tmp_path)
    w = load_file(str(d / "model.safetensors"))
    gone = "model.state_proj.weight"
    del w[gone]
    w["model.mystery.weight"] = torch.zeros(2)
    save_file(w, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing keys: model\.state_proj\.weight.*unexpected keys: model\.mystery"):
        load_model(d)


def test_wrong_shape_is_named(tmp_path):
    d = _copy(tmp_path)
    w = load_file(str(d / "model.safetensors"))
    w["model.action_in_proj.bias"] = torch.zeros(3)
    save_file(w, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"shape mismatches: model\.action_in_proj\.bias"):
        load_model(d)


def test_missing_weights_file_is_an_error(tmp_path):
    d = _copy(tmp_path)
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_model(d)


def test_hub_tokenizer_without_local_copy_says_what_to_pass(tmp_path):
    d = _copy(tmp_path)
    (d / "tokenizer.json").unlink()
    (d / "lerobot_overrides.json").write_text(json.dumps({
        k: v for k, v in json.loads((VARIANTS["pi0"] / "lerobot_overrides.json").read_text()).items() if k != "tokenizer"}))
    with pytest.raises(CheckpointError, match=r"google/paligemma-3b-pt-224.*copy.*tokenizer\.json.*local tokenizer path"):
        load_model(d)
    from vla_ros.model.lerobot_checkpoint import load_lerobot_policy

    model, tok = load_lerobot_policy(d, tokenizer=VARIANTS["pi0"])  # a local path works
    assert tok.vocab_size <= model.spec.vocab_size


def test_missing_statistics_are_named(tmp_path):
    d = _copy(tmp_path, "pi05")
    f = d / "policy_postprocessor_step_0_unnormalizer_processor.safetensors"
    stats = load_file(str(f))
    del stats["action.q99"]
    save_file(stats, str(f))
    with pytest.raises(CheckpointError, match=r"no 'action\.q99'"):
        load_model(d)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(type="act"), "type 'act' is not supported"),
    (lambda c: c.update(use_relative_actions=True), "use_relative_actions"),
    (lambda c: c.update(rtc_config={"enabled": True}), "rtc_config"),
    (lambda c: c.update(normalization_mapping={"VISUAL": "IDENTITY", "STATE": "MIN_MAX", "ACTION": "MIN_MAX"}),
     "normalization_mapping"),
])
def test_unsupported_options_are_refused(tmp_path, edit, message):
    d = _copy(tmp_path)
    _edit_json(d / "config.json", edit)
    with pytest.raises(CheckpointError, match=message):
        load_model(d)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_bench_runtime_runs_a_lerobot_directory(variant, capsys):
    from vla_ros.cli import main

    rc = main(["bench", "runtime", "--model", str(VARIANTS[variant]), "--steps", "2", "--samples", "2",
               "--repeats", "1", "--json"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["family"], r["variant"], r["steps"], r["samples"]) == ("joint_mot", variant, 2, 2)
    assert r["speedup"] == pytest.approx(r["baseline_denoise_ms"] / r["denoise_ms"])
    assert r["max_abs_diff"] <= TOL  # the cached runtime and the uncached joint forward agree


def test_real_variant_sizes_against_tiny_weights_are_a_shape_error(tmp_path):
    from vla_ros.model.lerobot_checkpoint import load_lerobot_policy

    d = _copy(tmp_path)  # without the fixture's overrides the config names PaliGemma 3B's sizes
    (d / "lerobot_overrides.json").unlink()
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_lerobot_policy(d, tokenizer=d / "tokenizer.json")


def test_broken_config_json_is_named(tmp_path):
    d = _copy(tmp_path)
    (d / "config.json").write_text('{"type": "pi0", ')
    with pytest.raises(CheckpointError, match=r"config\.json' is not valid JSON"):
        load_model(d)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_bfloat16_runs_close_to_lerobots_float32(variant):
    """bf16 (the CUDA default) casts every weight (LeRobot keeps vision and norms in fp32): no
    golden exists for it, so only closeness to the fp32 chunk, at bf16's precision, is checked."""
    rp = Replay(variant, dtype="bfloat16")
    out = rp.policy.act(rp.inputs(0), noise=rp.ref["flow.noise"][0:1])
    ref = rp.ref["output.actions"][0].numpy()
    assert np.abs(out.actions[0] - ref).max() <= 0.05 * np.abs(ref).max()


def test_the_cuda_graph_layout_gives_lerobots_chunk(replay):
    """The CUDA-graph layout (suffix slots at the buffer's capacity, unused prefix slots masked;
    pi0.5's per-step norm condition set inside the loop), run eagerly on the CPU."""
    r = replay.ref
    ctx = replay.policy.prefill(replay.inputs(1))
    be = replay.policy.backend
    sched, terms = be.schedule()
    with torch.inference_mode():
        cos, sin, mask, off, kv_len = be._suffix_tables(ctx, 1, graph=True)
        assert off == be.kv.capacity > ctx.length and mask is not None
        x = r["flow.noise"][1:2]
        for i, dt in enumerate(sched.dts):
            x = x + dt * be._velocity(x, terms[i], cos, sin, mask, off, kv_len)
    assert float((x[0] - r["flow.x"][-1][1]).abs().max()) <= TOL


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA graph needs a CUDA GPU (none here)")
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_cuda_graph_gives_lerobots_chunk(variant):
    policy = Policy.from_pretrained(VARIANTS[variant], device="cuda", dtype="float32")
    rp = Replay(variant)
    ctx = policy.prefill(rp.inputs(0))
    noise = rp.ref["flow.noise"][0:1].cuda()
    a, b = policy.denoise(ctx, noise=noise), policy.denoise(ctx, noise=noise)
    assert policy.backend.use_cuda_graph and torch.equal(a, b)
    assert float((a[0].cpu() - rp.ref["flow.x"][-1][0]).abs().max()) <= TOL
