"""Compatibility with NVIDIA's Alpamayo-R1 reference code (NVlabs/alpamayo, commit 1cba38c).

The golden fixture `test/fixtures/alpamayo_r1_tiny/` was made by the reference's own classes
(`scripts/make_reference_fixtures alpamayo`): `model/` is what its save_pretrained wrote, and the
`reference*.safetensors` hold what its sampling entry point did with `inputs.safetensors`. Here
vla_ros loads `model/` through its ordinary loader (with `base_vlm/` standing in for the hub id
`Qwen/Qwen3-VL-8B-Instruct`, through $VLA_ROS_BASE_VLM) and must reproduce, from the same inputs
and start noise: the prompt ids, the greedy reasoning tokens, the expert's positions, every Euler
step (x, t, v), the chained 10-step result and the final trajectory (1e-4, fp32), for both recorded cases (the rollout that stops at
<|traj_future_start|> and the one whose budget runs out first).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vla_ros.model import load_model
from vla_ros.model.alpamayo_release import BASE_VLM_ENV, is_release_dir, load_release, release_config
from vla_ros.model.checkpoint import CheckpointError
from vla_ros.model.config import ModelConfigError
from vla_ros.runtime.inputs import PolicyInputs
from vla_ros.runtime.policy import Policy

FIXTURE = Path(__file__).parent / "fixtures" / "alpamayo_r1_tiny"
MODEL = FIXTURE / "model"
TOL = 1e-4
STEP_TOL = 1e-5  # one velocity evaluation from the reference's own x: float32 rounding only
# reasoning budget of each run (the budget-at-stop run's ends at its <|traj_future_start|>)
CASES = {"reference.safetensors": 24, "reference_no_stop.safetensors": 8, "reference_budget_at_stop.safetensors": 12}


@pytest.fixture(scope="module")
def base_vlm_env():
    mp = pytest.MonkeyPatch()
    mp.setenv(BASE_VLM_ENV, str(FIXTURE / "base_vlm"))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE / "inputs.safetensors"))


@pytest.fixture(scope="module")
def policy(base_vlm_env) -> Policy:
    torch.manual_seed(0)
    model, tok = load_release(MODEL)  # 4 cameras x 4 frames, the fixture's 16 images
    return Policy(model, tok, max_samples=2, max_reasoning_tokens=24)


def _policy_inputs(inputs: dict[str, torch.Tensor]) -> PolicyInputs:
    images = inputs["images"].permute(0, 2, 3, 1).numpy().reshape(4, 4, *inputs["images"].shape[2:], 3)  # camera-major
    return PolicyInputs(images=images, history_xyz=inputs["ego_history_xyz"][0, 0].double().numpy(),
                        history_rot=inputs["ego_history_rot"][0, 0].double().numpy())


def _through_stop(generated: list[int]) -> list[int]:
    """The reference's greedy reasoning through its first <|traj_future_start|>."""
    stop = json.loads((FIXTURE / "meta.json").read_text())["tokens"]["special"]["traj_future_start"]
    return generated[:generated.index(stop) + 1]


def test_release_directory_is_recognised_and_configured(base_vlm_env) -> None:
    assert is_release_dir(MODEL) and not is_release_dir(FIXTURE / "base_vlm")
    cfg, base = release_config(MODEL)
    meta = json.loads((FIXTURE / "meta.json").read_text())
    assert base.resolve() == (FIXTURE / "base_vlm").resolve()
    assert cfg.vlm["text_config"]["vocab_size"] == meta["tokens"]["vocab_size"]
    assert cfg.action_proj.type == "alpamayo_v2" and not cfg.action_space.clip
    assert cfg.history.token_offset == meta["tokens"]["hist_token_start_idx"] - meta["tokens"]["traj_token_start_idx"]
    assert cfg.flow.steps == meta["shapes"]["flow_steps"]


def test_load_model_reads_the_release_and_its_statistics(base_vlm_env) -> None:
    model, tok = load_model(MODEL)  # the generic entry point every command uses
    meta = json.loads((FIXTURE / "meta.json").read_text())["action_stats"]
    np.testing.assert_allclose(model.stats.mean, (meta["accel_mean"], meta["curvature_mean"]), rtol=1e-6)
    np.testing.assert_allclose(model.stats.std, (meta["accel_std"], meta["curvature_std"]), rtol=1e-6)
    ref = load_file(str(MODEL / "model.safetensors"))
    state = model.state_dict()
    for key in ("action_in_proj.encoder.trunk.0.weight", "expert.layers.0.self_attn.q_proj.weight", "vlm.lm_head.weight"):
        assert torch.equal(state[key], ref[key])


def test_unresolvable_hub_id_names_what_to_pass(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(BASE_VLM_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match=f"Qwen/Qwen3-VL-8B-Instruct.*{BASE_VLM_ENV}"):
        load_model(MODEL)


def test_unknown_config_key_is_named(base_vlm_env, tmp_path) -> None:
    for f in MODEL.iterdir():
        (tmp_path / f.name).symlink_to(f)
    cfg = json.loads((MODEL / "config.json").read_text())
    cfg["action_in_proj_cfg"]["dropout"] = 0.1
    (tmp_path / "config.json").unlink()
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelConfigError, match="action_in_proj_cfg.dropout"):
        release_config(tmp_path)
    cfg["action_in_proj_cfg"].pop("dropout")
    cfg["diffusion_cfg"]["_target_"] = "somewhere.Else"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelConfigError, match="diffusion_cfg._target_"):
        release_config(tmp_path)


@pytest.mark.parametrize("case", sorted(CASES))
def test_reproduces_the_reference_rollout(policy: Policy, inputs, case: str) -> None:
    ref = load_file(str(FIXTURE / case))
    assert json.loads((FIXTURE / "meta.json").read_text())["cases"][case]["max_generation_length"] == CASES[case]
    prompt_len = inputs["input_ids"].shape[1]
    ctx = policy.prefill(_policy_inputs(inputs), reasoning_budget=CASES[case])
    plan_ids = policy.model.prefix_plan(policy.encode_images(inputs["images"].permute(0, 2, 3, 1).numpy(), None)[0],
                                        inputs["ego_history_xyz"][0, 0].double().numpy(), policy.tokenizer).input_ids
    assert torch.equal(plan_ids, inputs["input_ids"])  # prompt, image pads and history tokens

    policy.reason(ctx, CASES[case])
    generated = ref["sequences_raw"][0, prompt_len:].tolist()
    assert (ref["sequences_raw"] == ref["sequences_raw"][:1]).all()  # greedy: one rollout fits every sample
    stop = json.loads((FIXTURE / "meta.json").read_text())["tokens"]["special"]["traj_future_start"]
    expected = generated[:generated.index(stop) + 1] if stop in generated else generated
    assert ctx.reasoning_ids == expected
    # the K/V the expert reads: a <|traj_future_start|> in the budget's last slot is never fed
    assert ctx.length == int(ref["cache_len"])
    assert ctx.next_position == int(ref["expert_position_ids"][0, 0, 0])

    # Every Euler step: from the reference's own x_k at t_k, the velocity v_k (float32 rounding).
    for i in range(ref["flow_x"].shape[0]):
        v = policy.velocity(ctx, ref["flow_x"][i], float(ref["flow_t"][i])).float()
        torch.testing.assert_close(v, ref["flow_v"][i], atol=STEP_TOL, rtol=0)
    torch.testing.assert_close(ref["flow_x"][0], ref["noise"])

    # The final trajectory decoded from the reference's final action (speed estimate, integration).
    out = policy.decode(ref["action"], ctx)
    torch.testing.assert_close(out.xyz.float(), ref["pred_xyz"][0, 0], atol=TOL, rtol=0)
    torch.testing.assert_close(out.rot.float(), ref["pred_rot"][0, 0], atol=TOL, rtol=0)
    assert out.within_bounds.tolist() == ref["within_bounds"].bool().tolist()

    # The whole chain from the same start noise, end to end: every intermediate x_k and the final
    # action within 1e-4. The fixture's velocity field is well conditioned (meta.json
    # weight_rescale; its flow.ulp_effect is the reference's own sensitivity to one ulp of noise),
    # so a difference here is a difference in computation, not amplified rounding.
    assert json.loads((FIXTURE / "meta.json").read_text())["flow"]["ulp_effect"][case] <= 1e-5
    x = ref["noise"].clone()
    for i in range(ref["flow_x"].shape[0] - 1):
        x = x + (float(ref["flow_t"][i + 1]) - float(ref["flow_t"][i])) * policy.velocity(ctx, x, float(ref["flow_t"][i])).float()
        torch.testing.assert_close(x, ref["flow_x"][i + 1], atol=TOL, rtol=0)
    actions = policy.denoise(ctx, noise=ref["noise"])
    torch.testing.assert_close(actions.float(), ref["action"], atol=TOL, rtol=0)
    assert float((ref["action"] - ref["noise"]).abs().max()) > 100 * TOL  # the flow moves x by far more than TOL
    chained = policy.decode(actions, ctx)
    torch.testing.assert_close(chained.xyz.float(), ref["pred_xyz"][0, 0], atol=TOL, rtol=0)
    torch.testing.assert_close(chained.rot.float(), ref["pred_rot"][0, 0], atol=TOL, rtol=0)


def test_act_runs_the_release_rollout(policy: Policy, inputs) -> None:
    ref = load_file(str(FIXTURE / "reference.safetensors"))
    out = policy.act(_policy_inputs(inputs), reasoning=True, max_reasoning_tokens=24, noise=ref["noise"])
    prompt_len = inputs["input_ids"].shape[1]
    generated = _through_stop(ref["sequences_raw"][0, prompt_len:].tolist())
    assert out.reasoning == policy.tokenizer.decode(generated, skip_special_tokens=True)
    ctx = policy.prefill(_policy_inputs(inputs), reasoning_budget=24)
    policy.reason(ctx, 24)
    np.testing.assert_array_equal(out.raw_actions, policy.denoise(ctx, noise=ref["noise"]).float().numpy())
    # End to end, images and history in, trajectory out: the reference entry point's final output.
    np.testing.assert_allclose(out.raw_actions, ref["action"].numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(out.xyz, ref["pred_xyz"][0, 0].double().numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(out.rot, ref["pred_rot"][0, 0].double().numpy(), atol=TOL, rtol=0)


def test_zero_start_noise_as_node_and_eval_run_it(policy: Policy, inputs) -> None:
    """inference.noise_scale 0, one sample (the node's and eval's defaults) against the reference
    run whose sampler drew zero start noise."""
    ref = load_file(str(FIXTURE / "reference_zero_noise.safetensors"))
    assert not ref["noise"].any()
    out = policy.act(_policy_inputs(inputs), reasoning=True, max_reasoning_tokens=48, noise_scale=0.0)
    np.testing.assert_allclose(out.raw_actions, ref["action"].numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(out.xyz, ref["pred_xyz"][0, 0].double().numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(out.rot, ref["pred_rot"][0, 0].double().numpy(), atol=TOL, rtol=0)


def test_out_of_bound_actions_are_reported_not_changed(policy: Policy) -> None:
    space = policy.model.action_space
    big = torch.zeros(2, 64, 2, dtype=torch.float64)
    big[1, 5, 1] = 100.0  # curvature 100 std away: far outside +-0.2 1/m
    phys = space.denormalize(big)
    assert phys[1, 5, 1] == pytest.approx(100.0 * space.stats.std[1] + space.stats.mean[1])
    assert space.within_bounds(big).tolist() == [True, False]


def test_10b_preset_has_the_released_structure_and_published_size() -> None:
    from vla_ros.model.presets import preset_config, preset_parameter_counts

    cfg = preset_config("random:alpamayo-r1-10b")
    assert cfg.action_proj.type == "alpamayo_v2" and not cfg.action_space.clip
    assert cfg.prompt.reasoning_stop == "future_start" and cfg.history.scheme == "prev_delta_round"
    counts = preset_parameter_counts("random:alpamayo-r1-10b")
    print({k: f"{v / 1e9:.3f}B" for k, v in counts.items()}, f"total {sum(counts.values()) / 1e9:.3f}B")
    # Published: the 2.3B action expert (NVIDIA's Alpamayo-R1 description); Qwen3-VL-8B-Instruct,
    # 8.77B on its model page, whose 151,936 embedding rows (untied input and lm_head) the release
    # replaces with its own vocabulary (155,697 rows here).
    assert counts["expert"] == pytest.approx(2.3e9, rel=0.03)
    qwen_rows_delta = 2 * (155_697 - 151_936) * 4096
    assert counts["vlm.visual"] + counts["vlm.text"] - qwen_rows_delta == pytest.approx(8.77e9, rel=0.01)
    assert counts["action_in_proj"] == 3 * 20 * 1024 + 1024 + 3 * (1024 * 1024 + 1024 + 1024) + 1024 * 2048 + 2048 + 1024 + 2 * 2048
    assert counts["action_out_proj"] == 2048 * 2 + 2


def test_eval_accepts_the_release_directory(base_vlm_env) -> None:
    from vla_ros.config import load_config
    from vla_ros.replay.eval_runner import ModelSpec, check_model

    spec = ModelSpec(path=str(MODEL), device="cpu", dtype="float32", backend="torch", max_samples=1,
                     max_reasoning_tokens=0)
    cfg = check_model(spec, load_config(None))  # the default drive config: 4 cameras x 4 frames, 16 poses
    assert cfg.action_proj.type == "alpamayo_v2" and cfg.history.steps == 16


def test_per_sample_reasoning(policy: Policy, inputs) -> None:
    ref = load_file(str(FIXTURE / "reference.safetensors"))
    prompt_len = inputs["input_ids"].shape[1]
    expected = _through_stop(ref["sequences_raw"][0, prompt_len:].tolist())
    # Greedy: every sample's own rollout is the reference's, and each sample denoises exactly as a
    # single-sample tick on that prefix does.
    ctx = policy.prefill(_policy_inputs(inputs), reasoning_budget=24)
    actions, tokens = policy.reason_per_sample(ctx, 24, noise=ref["noise"], greedy=True)
    assert tokens == [expected, expected]
    for s in range(2):
        single = policy.prefill(_policy_inputs(inputs), reasoning_budget=24)
        policy.reason(single, 24)
        torch.testing.assert_close(actions[s:s + 1], policy.denoise(single, noise=ref["noise"][s:s + 1]), atol=0, rtol=0)
    # Sampled (the reference's top_p 0.98, temperature 0.6): each sample decodes its own rollout
    # from the prompt, so the rollouts differ; a seeded generator repeats them.
    runs = []
    for _ in range(2):
        ctx = policy.prefill(_policy_inputs(inputs), reasoning_budget=24)
        runs.append(policy.reason_per_sample(ctx, 24, noise=ref["noise"], generator=torch.Generator().manual_seed(3)))
    (a0, t0), (a1, t1) = runs
    assert t0 == t1 and torch.equal(a0, a1)
    assert t0[0] != t0[1]
    assert all(len(t) <= 24 for t in t0)


def test_bench_baseline_builds_the_reference_prompt_and_matches_the_runtime(policy: Policy, inputs) -> None:
    """`vla-ros bench runtime --model DIR` times the runtime against a transformers loop; on the
    release directory that loop must read the reference's prompt (history tokens after the future
    bins) and denoise to the runtime's actions."""
    from vla_ros.model.flow_matching import flow_schedule
    from vla_ros.runtime.tools.baseline import baseline_denoise, baseline_inputs, baseline_prefill

    model = policy.model
    b_in = baseline_inputs(model, model.prompt_builder(policy.tokenizer), _policy_inputs(inputs).images,
                           inputs["ego_history_xyz"][0, 0].double().numpy(), policy.device, policy.dtype)
    assert torch.equal(b_in["input_ids"].cpu(), inputs["input_ids"])
    noise = load_file(str(FIXTURE / "reference.safetensors"))["noise"]
    base = baseline_denoise(model, baseline_prefill(model, b_in), noise, flow_schedule(model.config.flow, 10))
    ctx = policy.prefill(_policy_inputs(inputs), reasoning_budget=0)
    torch.testing.assert_close(policy.denoise(ctx, noise=noise).float(), base.float(), atol=TOL, rtol=0)
