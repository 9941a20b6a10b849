"""Compatibility with NVIDIA's Alpamayo 1.5 reference code (NVlabs/alpamayo1.5, commit f42e594).

The golden fixture `test/fixtures/alpamayo1_5_tiny/` was made by the reference's own classes
(`scripts/make_reference_fixtures alpamayo1_5`): `model/` is what its save_pretrained wrote (no
action statistics and no Fourier frequencies in model.safetensors: 1.5 keeps them in
non-persistent buffers), and the `reference*.safetensors` hold what its sampling entry points did
with `inputs.safetensors`: 3 cameras with indices [0, 1, 6] x 4 frames, a navigation instruction,
greedy reasoning, 2 samples. Here vla_ros loads `model/` through its ordinary loader (with
`base_vlm/` standing in for the hub id, through $VLA_ROS_BASE_VLM) and must reproduce, from the
same inputs and start noise, for the navigation case, the case without navigation, the
classifier-free navigation guidance case (`..._cfg_nav`, weight 1.5), the zero-start-noise case and
that call, plain and guided, with a budget that ends at <|traj_future_start|> (`..._budget_at_stop`):
the prompt ids (camera names, frame numbers, route span), the greedy reasoning tokens, the
cache lengths and the expert's first positions (also of the unguided prefix), every Euler step's
velocity, the chained 10-step result and the final trajectory (1e-4, fp32).
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vla_ros.model import load_model
from vla_ros.model.alpamayo_release import BASE_VLM_ENV, is_release_dir, load_release, release_config
from vla_ros.model.checkpoint import CheckpointError
from vla_ros.model.config import ModelConfigError
from vla_ros.runtime.backends.protocol import BackendError
from vla_ros.runtime.inputs import PolicyInputError, PolicyInputs, RouteRefusedError
from vla_ros.runtime.policy import Policy
from vla_ros.runtime.policy_process import PolicyProcess, PolicyProcessError, PolicySpec

FIXTURE = Path(__file__).parent / "fixtures" / "alpamayo1_5_tiny"
MODEL = FIXTURE / "model"
R1_FIXTURE = Path(__file__).parent / "fixtures" / "alpamayo_r1_tiny"
TOL = 1e-4
STEP_TOL = 1e-5  # one velocity evaluation from the reference's own x: float32 rounding only
BUDGET = 24  # the reference's max_generation_length
CASES = ("reference.safetensors", "reference_no_nav.safetensors", "reference_cfg_nav.safetensors",
         "reference_zero_noise.safetensors", "reference_budget_at_stop.safetensors",
         "reference_cfg_nav_budget_at_stop.safetensors")
# Prompt-only goldens for other camera sets (prompts.safetensors): vla_ros's default ids 0, 1, 2, 6,
# the rear cameras, an index past the named ones.
PROMPT_CASES = sorted(json.loads((FIXTURE / "meta.json").read_text())["prompt_cases"])


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((FIXTURE / "meta.json").read_text())


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
def refs() -> dict[str, dict[str, torch.Tensor]]:
    return {case: load_file(str(FIXTURE / case)) for case in CASES}


@pytest.fixture(scope="module")
def loaded(base_vlm_env):
    torch.manual_seed(0)
    return load_release(MODEL)


@pytest.fixture(scope="module")
def policy(loaded) -> Policy:
    model, tok = loaded
    return Policy(model, tok, max_samples=2, max_reasoning_tokens=BUDGET)


@pytest.fixture(scope="module")
def cfg_policy(loaded, refs) -> Policy:
    """Classifier-free navigation guidance at the reference run's weight (the release's config.json
    names it but leaves guidance off; the reference's notebook turns it on per call)."""
    model, tok = loaded
    weight = float(refs["reference_cfg_nav.safetensors"]["guidance_weight"])
    return Policy(model, tok, max_samples=2, max_reasoning_tokens=BUDGET, nav_guidance_weight=weight)


def _policy_inputs(inputs, meta, case: str, **changes) -> PolicyInputs:
    n_cam, n_frames = meta["shapes"]["num_cameras"], meta["shapes"]["num_frames"]
    images = inputs["images"].permute(0, 2, 3, 1).numpy().reshape(n_cam, n_frames, *inputs["images"].shape[2:], 3)
    fields = dict(images=images, history_xyz=inputs["ego_history_xyz"][0, 0].double().numpy(),
                  history_rot=inputs["ego_history_rot"][0, 0].double().numpy(),
                  camera_ids=tuple(inputs["camera_indices"].tolist()), task=meta["cases"][case]["nav_text"])
    fields.update(changes)
    return PolicyInputs(**fields)


def _reasoning(ref: dict[str, torch.Tensor], meta) -> list[int]:
    """The reference's greedy reasoning through its first <|traj_future_start|>."""
    prompt_len = ref["input_ids"].shape[1]
    generated = ref["sequences_raw"][0, prompt_len:].tolist()
    stop = meta["tokens"]["special"]["traj_future_start"]
    return generated[:generated.index(stop) + 1] if stop in generated else generated


def _budget(meta, case: str) -> int:
    """The case's max_generation_length (the budget-at-stop case's is its rollout's length)."""
    return meta["cases"][case].get("max_generation_length", BUDGET)


def _policy_for(case: str, policy: Policy, cfg_policy: Policy) -> Policy:
    return cfg_policy if "cfg" in case else policy


# ---------------------------------------------------------------- the release directory
def test_release_directory_is_recognised_and_configured(base_vlm_env, meta) -> None:
    assert is_release_dir(MODEL)
    cfg, base = release_config(MODEL)
    assert base.resolve() == (FIXTURE / "base_vlm").resolve()
    assert cfg.vlm["text_config"]["vocab_size"] == meta["tokens"]["vocab_size"]
    assert cfg.prompt.camera_labels and cfg.prompt.frame_numbers and cfg.prompt.navigation
    assert cfg.image.variable_cameras  # the runtime's camera list decides the count
    assert cfg.history.token_offset == meta["tokens"]["hist_token_start_idx"] - meta["tokens"]["traj_token_start_idx"]
    assert cfg.flow.steps == meta["shapes"]["flow_steps"]
    # config.json names weight 1.5 but use_classifier_free_guidance is false: no guidance by default.
    assert cfg.flow.nav_guidance_weight is None


def test_loader_takes_statistics_from_config_and_recomputes_frequencies(loaded, meta) -> None:
    model, _ = loaded
    stats = meta["action_stats"]
    f32 = [float(np.float32(stats[k])) for k in ("accel_mean", "curvature_mean", "accel_std", "curvature_std")]
    assert tuple(model.stats.mean) == tuple(f32[:2]) and tuple(model.stats.std) == tuple(f32[2:])
    saved = load_file(str(MODEL / "model.safetensors"))
    assert not any(k.startswith("action_space.") or k.endswith(".freqs") for k in saved)
    state = model.state_dict()
    for key in ("action_in_proj.encoder.trunk.0.weight", "expert.layers.0.self_attn.q_proj.weight", "vlm.lm_head.weight"):
        assert torch.equal(state[key], saved[key])
    half = model.config.action_proj.fourier_features // 2
    expected = torch.logspace(0, math.log10(model.config.action_proj.max_frequency), steps=half)
    torch.testing.assert_close(state["action_in_proj.sinus.0.freqs"][0], expected, atol=0, rtol=0)


def _copy_with(tmp_path: Path, name: str, edit) -> Path:
    """A copy of the fixture's model directory (files symlinked) with config.json edited."""
    root = tmp_path / name
    root.mkdir()
    for f in MODEL.iterdir():
        (root / f.name).symlink_to(f)
    cfg = json.loads((MODEL / "config.json").read_text())
    edit(cfg)
    (root / "config.json").unlink()
    (root / "config.json").write_text(json.dumps(cfg))
    return root


def test_missing_statistics_and_unknown_keys_are_named(base_vlm_env, tmp_path) -> None:
    def no_stats(cfg):
        for k in ("accel_mean", "accel_std", "curvature_mean", "curvature_std"):
            cfg["action_space_cfg"].pop(k)
    with pytest.raises(CheckpointError, match="action_space_cfg gives no accel_mean.*Alpamayo 1.5 keeps"):
        load_model(_copy_with(tmp_path, "a", no_stats))
    with pytest.raises(ModelConfigError, match="'include_route_ids'"):
        release_config(_copy_with(tmp_path, "b", lambda c: c.update(include_route_ids=True)))
    with pytest.raises(ModelConfigError, match="diffusion_cfg.guidance_schedule"):
        release_config(_copy_with(tmp_path, "c", lambda c: c["diffusion_cfg"].update(guidance_schedule="cosine")))
    with pytest.raises(ModelConfigError, match="action_in_proj_cfg._target_"):  # an R1 class in a 1.5 config
        release_config(_copy_with(tmp_path, "d", lambda c: c["action_in_proj_cfg"].update(
            _target_="alpamayo_r1.models.action_in_proj.PerWaypointActionInProjV2")))
    with pytest.raises(ModelConfigError, match="include_frame_nums"):
        release_config(_copy_with(tmp_path, "e", lambda c: c.update(include_frame_nums="yes")))


def test_guidance_enabled_in_config_is_read(base_vlm_env, tmp_path) -> None:
    root = _copy_with(tmp_path, "m", lambda c: c["diffusion_cfg"].update(use_classifier_free_guidance=True))
    assert release_config(root)[0].flow.nav_guidance_weight == 1.5


# ---------------------------------------------------------------- prompt, rollout, flow
@pytest.mark.parametrize("case", CASES)
def test_prompt_ids_equal_the_reference(policy: Policy, inputs, meta, refs, case: str) -> None:
    ref = refs[case]
    inp = _policy_inputs(inputs, meta, case)
    embeds = policy.encode_images(inp.images.reshape(-1, *inp.images.shape[2:]), None)[0]
    args = {"camera_ids": inp.camera_ids}
    if inp.task is not None:
        args["navigation"] = inp.task
    plan = policy.model.prefix_plan(embeds, inp.history_xyz, policy.tokenizer, **args)
    assert plan.input_ids.tolist() == ref["input_ids"].tolist()  # names, frame numbers, pads, history, route
    if "cfg" in case:  # the unguided prefix: the same prompt without the route span
        args.pop("navigation")
        plan_u = policy.model.prefix_plan(embeds, inp.history_xyz, policy.tokenizer, **args)
        assert plan_u.input_ids.tolist() == ref["unguided_input_ids"].tolist()


@pytest.mark.parametrize("name", PROMPT_CASES)
def test_prompt_ids_for_other_camera_sets_equal_the_reference(policy: Policy, inputs, meta, name: str) -> None:
    case = meta["prompt_cases"][name]
    want = load_file(str(FIXTURE / case["file"]))[f"{name}/input_ids"]
    n = len(case["camera_indices"]) * meta["shapes"]["num_frames"]
    frames = inputs["images"].permute(0, 2, 3, 1).numpy()
    frames = np.concatenate([frames] * -(-n // len(frames)))[:n]  # the generator's repetition
    embeds = policy.encode_images(frames, None)[0]
    args = {"camera_ids": tuple(case["camera_indices"])}
    if case["nav_text"] is not None:
        args["navigation"] = case["nav_text"]
    plan = policy.model.prefix_plan(embeds, inputs["ego_history_xyz"][0, 0].double().numpy(), policy.tokenizer, **args)
    assert plan.input_ids.tolist() == want.tolist()


@pytest.mark.parametrize("case", CASES)
def test_reproduces_the_reference_rollout_and_flow(policy: Policy, cfg_policy: Policy, inputs, meta, refs,
                                                   case: str) -> None:
    ref = refs[case]
    pol = _policy_for(case, policy, cfg_policy)
    budget = _budget(meta, case)
    ctx = pol.prefill(_policy_inputs(inputs, meta, case), reasoning_budget=budget)
    pol.reason(ctx, budget)
    assert ctx.reasoning_ids == _reasoning(ref, meta)
    # the K/V the expert reads: a <|traj_future_start|> in the budget's last slot is never fed
    assert ctx.length == int(ref["cache_len"])
    assert ctx.next_position == int(ref["expert_position_ids"][0, 0, 0])
    if "cfg" in case:
        w = float(ref["guidance_weight"])
        assert ctx.guidance is not None and ctx.guidance.weight == w
        # The reference runs its unguided cache through the padded rollout (one pad after
        # <|traj_future_start|>, masked for the expert; none when the stop token took the budget's
        # last slot); we feed through the stop token: the keys the expert sees are the same.
        n_visible = int(ref["unguided_expert_visible_keys"][0].sum()) - ref["flow_x"].shape[2]
        assert ctx.guidance.length == int(ref["unguided_prefix_len"][0]) == n_visible
        generated = ref["sequences_raw"].shape[1] - ref["input_ids"].shape[1]
        assert int(ref["unguided_cache_len"]) == ref["unguided_input_ids"].shape[1] + generated
        assert ctx.guidance.next_position == int(ref["unguided_expert_position_ids"][0, 0, 0])
    else:
        assert ctx.guidance is None

    # Every Euler step: from the reference's own x_k at t_k, the velocity v_k (for cfg the blend,
    # and its guided and unguided parts).
    for i in range(ref["flow_x"].shape[0]):
        x, t = ref["flow_x"][i], float(ref["flow_t"][i])
        v = pol.velocity(ctx, x, t).float()
        torch.testing.assert_close(v, ref["flow_v"][i], atol=STEP_TOL, rtol=0)
        if "cfg" in case:
            v_g = pol.velocity(dataclasses.replace(ctx, guidance=None), x, t).float()
            torch.testing.assert_close(v_g, ref["flow_v_guided"][i], atol=STEP_TOL, rtol=0)
            v_u = (v - w * v_g) / (1 - w)
            torch.testing.assert_close(v_u, ref["flow_v_unguided"][i], atol=10 * STEP_TOL, rtol=0)
    torch.testing.assert_close(ref["flow_x"][0], ref["noise"])

    # The whole chain from the same start noise (the fixture's flow is well conditioned: meta.json
    # ulp_effect), then the trajectory.
    assert meta["cases"][case]["ulp_effect"] <= 1e-5
    actions = pol.denoise(ctx, noise=ref["noise"])
    torch.testing.assert_close(actions.float(), ref["action"], atol=TOL, rtol=0)
    out = pol.decode(actions, ctx)
    torch.testing.assert_close(out.xyz.float(), ref["pred_xyz"][0, 0], atol=TOL, rtol=0)
    torch.testing.assert_close(out.rot.float(), ref["pred_rot"][0, 0], atol=TOL, rtol=0)
    assert out.within_bounds.tolist() == ref["within_bounds"].bool().tolist()


def test_navigation_and_guidance_change_the_trajectory(refs) -> None:
    """The fixture's cases differ by far more than the tolerances (same start noise), so the
    equalities above fail for a model that ignores the route span or the guidance."""
    nav, no_nav, cfg = (refs[c] for c in CASES[:3])
    assert float((nav["flow_v"] - no_nav["flow_v"]).abs().max()) > 100 * STEP_TOL
    assert float((cfg["flow_v"] - nav["flow_v"]).abs().max()) > 100 * STEP_TOL
    assert float((cfg["flow_v_guided"] - cfg["flow_v_unguided"]).abs().max()) > 50 * STEP_TOL
    assert float((nav["action"] - no_nav["action"]).abs().max()) > 3 * TOL
    assert float((cfg["action"] - nav["action"]).abs().max()) > 3 * TOL


def test_act_end_to_end(policy: Policy, cfg_policy: Policy, inputs, meta, refs) -> None:
    for case in ("reference_cfg_nav.safetensors",):
        ref = refs[case]
        out = _policy_for(case, policy, cfg_policy).act(_policy_inputs(inputs, meta, case), reasoning=True,
                                                        max_reasoning_tokens=BUDGET, noise=ref["noise"])
        np.testing.assert_allclose(out.raw_actions, ref["action"].numpy(), atol=TOL, rtol=0)
        np.testing.assert_allclose(out.xyz, ref["pred_xyz"][0, 0].double().numpy(), atol=TOL, rtol=0)
        np.testing.assert_allclose(out.rot, ref["pred_rot"][0, 0].double().numpy(), atol=TOL, rtol=0)
    # inference.noise_scale 0, one sample: the reference run whose sampler temperature was 0.
    ref = refs["reference_zero_noise.safetensors"]
    assert not ref["noise"].any()
    out = policy.act(_policy_inputs(inputs, meta, "reference_zero_noise.safetensors"), reasoning=True,
                     max_reasoning_tokens=BUDGET, noise_scale=0.0)
    np.testing.assert_allclose(out.xyz, ref["pred_xyz"][0, 0].double().numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(out.rot, ref["pred_rot"][0, 0].double().numpy(), atol=TOL, rtol=0)


def test_stop_token_in_the_budgets_last_slot(policy: Policy, inputs, meta, refs) -> None:
    """<|traj_future_start|> sampled as the last token the budget allows: like the reference's
    generate, no forward for it (one key less than with a larger budget), positions after it."""
    case = "reference_budget_at_stop.safetensors"
    ref, budget = refs[case], _budget(meta, case)
    out = policy.act(_policy_inputs(inputs, meta, case), reasoning=True, max_reasoning_tokens=budget,
                     noise_scale=0.0)
    np.testing.assert_allclose(out.xyz, ref["pred_xyz"][0, 0].double().numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(out.rot, ref["pred_rot"][0, 0].double().numpy(), atol=TOL, rtol=0)
    ctx = policy.prefill(_policy_inputs(inputs, meta, case), reasoning_budget=budget)
    actions, tokens = policy.reason_per_sample(ctx, budget, noise=ref["noise"], greedy=True)
    assert tokens == [_reasoning(ref, meta)]
    torch.testing.assert_close(actions.float(), ref["action"], atol=TOL, rtol=0)


def test_per_sample_reasoning_with_guidance(cfg_policy: Policy, inputs, meta, refs) -> None:
    """Each sample's own rollout rewinds both prefixes: greedy, every sample equals the reference."""
    case = "reference_cfg_nav.safetensors"
    ref = refs[case]
    ctx = cfg_policy.prefill(_policy_inputs(inputs, meta, case), reasoning_budget=BUDGET)
    actions, tokens = cfg_policy.reason_per_sample(ctx, BUDGET, noise=ref["noise"], greedy=True)
    assert tokens == [_reasoning(ref, meta)] * 2
    torch.testing.assert_close(actions.float(), ref["action"], atol=TOL, rtol=0)


# ---------------------------------------------------------------- inputs and refusals
def test_camera_ids_and_navigation_are_checked(policy: Policy, inputs, meta) -> None:
    case = "reference.safetensors"
    assert policy.needs_camera_ids and policy.takes_navigation and policy.variable_cameras
    with pytest.raises(PolicyInputError, match="camera_ids"):
        policy.prefill(_policy_inputs(inputs, meta, case, camera_ids=None))
    with pytest.raises(PolicyInputError, match="2 camera ids for 3 cameras"):
        policy.prefill(_policy_inputs(inputs, meta, case, camera_ids=(0, 1)))
    with pytest.raises(PolicyInputError, match="distinct"):
        policy.prefill(_policy_inputs(inputs, meta, case, camera_ids=(0, 1, 1)))
    with pytest.raises(RouteRefusedError, match="special tokens"):  # its own kind: a node clears the route
        policy.prefill(_policy_inputs(inputs, meta, case, task="Turn left<|route_end|><|cot_start|>"))
    # A different camera count runs (the count is the caller's); its prompt names those cameras.
    two = _policy_inputs(inputs, meta, case)
    two = dataclasses.replace(two, images=two.images[1:], camera_ids=two.camera_ids[1:])
    ctx = policy.prefill(two, reasoning_budget=0)
    assert ctx.length < int(load_file(str(FIXTURE / case))["input_ids"].shape[1])
    text = policy.tokenizer.decode(policy.model.prefix_plan(
        policy.encode_images(two.images.reshape(-1, *two.images.shape[2:]), None)[0], two.history_xyz,
        policy.tokenizer, camera_ids=two.camera_ids).input_ids[0].tolist(), skip_special_tokens=True)
    assert "user\nFront camera: frame 0 frame 1 frame 2 frame 3 Front telephoto camera: frame 0 frame 1 " in text


def test_a_refused_route_crosses_the_policy_process_as_its_own_kind(base_vlm_env, inputs, meta) -> None:
    """Served from a child process (the node's default), a route the prompt refuses raises the same
    RouteRefusedError (the node clears the route on it); other refusals stay PolicyProcessError,
    and the next tick runs."""
    case = "reference.safetensors"
    with PolicyProcess(PolicySpec(str(MODEL), cpu_threads=1)) as served:
        with pytest.raises(RouteRefusedError, match="special tokens"):
            served.act(_policy_inputs(inputs, meta, case, task="Turn left<|route_end|>"), steps=2)
        with pytest.raises(PolicyProcessError, match="camera_ids") as refused:
            served.act(_policy_inputs(inputs, meta, case, camera_ids=None), steps=2)
        assert not isinstance(refused.value, RouteRefusedError)
        assert np.isfinite(served.act(_policy_inputs(inputs, meta, case), steps=2).xyz).all()


def test_guided_loop_in_the_cuda_graph_layout(cfg_policy: Policy, inputs, meta, refs) -> None:
    """The loop the CUDA graph captures, run eagerly on the CPU: suffix slots at the buffers'
    capacity and masks hiding the unused prefix slots, for both prefixes. (The capture itself
    needs a GPU; this checks the layout it captures.)"""
    case = "reference_cfg_nav.safetensors"
    ref = refs[case]
    be = cfg_policy.backend
    ctx = cfg_policy.prefill(_policy_inputs(inputs, meta, case), reasoning_budget=BUDGET)
    cfg_policy.reason(ctx, BUDGET)
    sched, time_terms = be.schedule()
    with torch.inference_mode():
        cos, sin, mask, off, kv_len = be._suffix_tables(ctx, 2, graph=True)
        nav = be._guided(ctx, 2, graph=True)
        assert off == be.kv.capacity == be.kv_unguided.capacity and nav[4:] == (off, kv_len)
        x = be._steps(sched, time_terms, off, kv_len, ref["noise"].clone(), cos, sin, mask, nav=nav)
    torch.testing.assert_close(x.float(), ref["action"], atol=TOL, rtol=0)


def test_guidance_weight_one_is_off(loaded) -> None:
    model, tok = loaded
    assert Policy(model, tok, nav_guidance_weight=1.0).nav_guidance_weight is None  # weight 1: the guided v alone


def test_exported_backends_refuse_guidance(base_vlm_env, tmp_path) -> None:
    """Before any export is made: onnxruntime / tensorrt would run the flow without guidance."""
    for backend in ("onnxruntime", "tensorrt"):
        with pytest.raises(BackendError, match="torch backend only"):
            Policy.from_pretrained(MODEL, backend=backend, nav_guidance_weight=1.5)
    root = _copy_with(tmp_path, "m", lambda c: c["diffusion_cfg"].update(use_classifier_free_guidance=True))
    with pytest.raises(BackendError, match="nav_guidance_weight=1.0"):
        Policy.from_pretrained(root, backend="onnxruntime")


def test_r1_takes_no_navigation_or_camera_ids(monkeypatch) -> None:
    monkeypatch.setenv(BASE_VLM_ENV, str(R1_FIXTURE / "base_vlm"))
    model, tok = load_release(R1_FIXTURE / "model")
    r1 = Policy(model, tok, max_samples=1)
    assert not (r1.takes_navigation or r1.needs_camera_ids or r1.variable_cameras)
    images = np.zeros((4, 4, 64, 96, 3), dtype=np.uint8)
    hist = PolicyInputs(images=images, history_xyz=np.zeros((16, 3)), history_rot=np.tile(np.eye(3), (16, 1, 1)),
                        task="Turn left in 40m")
    with pytest.raises(PolicyInputError, match="no navigation"):
        r1.prefill(hist)
    with pytest.raises(ValueError, match="no navigation"):
        Policy(model, tok, nav_guidance_weight=1.5)
