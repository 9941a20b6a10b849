"""Real-time chunking (vla_ros/runtime/rtc.py) against LeRobot 0.6.1's own RTC.

The golden records rtc.{json,safetensors} beside the pi0 / pi0.5 fixtures were written by
scripts/reference_fixtures/lerobot.py (record_rtc): LeRobot's policy with RTCConfig(enabled=True)
through predict_action_chunk(..., inference_delay=d, prev_chunk_left_over=..., execution_horizon=H),
one case per prefix schedule. Our Policy with the same ChunkGuide must give LeRobot's guided chunk
within the compatibility tolerance (fp32), our prefix weights must be LeRobot's, and guidance must
do what it is for: pull the first actions of the new chunk onto the leftover, in either flow
direction (pi0's noise at t=1, and the kv_expert family's noise at t=0).
"""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from test_lerobot_compat import TOL, VARIANTS, Replay
from vla_ros.runtime import Policy, PolicyInputError
from vla_ros.runtime.rtc import SCHEDULES, ChunkGuide, guidance_weight, prefix_weights

ACTION_DIM = 6  # the fixtures' robot action dimension (the model pads to max_action_dim)


class Record:
    def __init__(self, variant: str) -> None:
        self.replay = Replay(variant)
        self.rtc = load_file(str(VARIANTS[variant] / "rtc.safetensors"))
        self.meta = json.loads((VARIANTS[variant] / "rtc.json").read_text())

    def guide(self, case: str, b: int, **changes) -> ChunkGuide:
        c = self.meta["cases"][case]
        fields = dict(leftover=self.rtc[f"{case}.leftover"][b].numpy(), inference_delay=c["inference_delay"],
                      execution_horizon=c["execution_horizon"], schedule=c["schedule"].lower(),
                      max_guidance_weight=c["max_guidance_weight"])
        fields.update(changes)
        return ChunkGuide(**fields)

    def act(self, b: int, guide: ChunkGuide | None):
        return self.replay.policy.act(self.replay.inputs(b), noise=self.rtc["noise"][b:b + 1], guide=guide)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def record(request) -> Record:
    return Record(request.param)


CASES = ("zeros", "ones", "linear", "exp")


# ------------------------------------------------------------------ LeRobot's numbers
def test_prefix_weights_are_lerobots():
    meta = json.loads((VARIANTS["pi0"] / "rtc.json").read_text())
    assert {w["schedule"].lower() for w in meta["prefix_weights"]} == set(SCHEDULES)
    for w in meta["prefix_weights"]:
        ours = prefix_weights(w["inference_delay"], w["execution_horizon"], w["total"], w["schedule"].lower())
        assert torch.equal(ours, torch.tensor(w["weights"], dtype=torch.float32)), w


@pytest.mark.parametrize("case", CASES)
def test_guided_chunk_is_lerobots(record, case):
    for b in range(2):
        out = record.act(b, record.guide(case, b))
        norm = float(np.abs(out.raw_actions[0, :, :ACTION_DIM] - record.rtc[f"{case}.actions_normalized"][b].numpy()).max())
        phys = float(np.abs(out.actions[0] - record.rtc[f"{case}.actions"][b].numpy()).max())
        assert norm <= TOL and phys <= TOL, f"{case} sample {b}: |ours - LeRobot| {norm:.2e} normalized, {phys:.2e} actions"


def test_unguided_chunk_with_the_rtc_noise_is_lerobots(record):
    out = record.act(0, None)
    assert np.abs(out.actions[0] - record.rtc["unguided.actions"][0].numpy()).max() <= TOL


def test_guidance_weight_follows_the_flow_time():
    """LeRobot's c * inv_r2: the cap at pure noise, about 1/tau early, ~2 at the middle, the cap again near data."""
    assert guidance_weight(0.0, 10.0) == 10.0
    assert guidance_weight(0.5, 10.0) == pytest.approx(2.0)
    assert guidance_weight(0.1, 10.0) == pytest.approx((0.01 + 0.81) / (0.1 * 0.9), rel=1e-6)
    assert guidance_weight(0.99, 10.0) == 10.0 and guidance_weight(0.5, 1.5) == 1.5


# ------------------------------------------------------------------ behaviour
def _distance(actions: np.ndarray, leftover: np.ndarray, n: int) -> float:
    return float(np.abs(actions[:n, :leftover.shape[1]] - leftover[:n]).max())


@pytest.mark.parametrize("case", ["zeros", "linear"])
def test_guidance_joins_the_new_chunk_to_the_leftover(record, case):
    g = record.guide(case, 1)
    d = g.inference_delay
    guided, free = record.act(1, g).raw_actions[0], record.act(1, None).raw_actions[0]
    near, far = _distance(guided, g.leftover, d), _distance(free, g.leftover, d)
    assert near < 0.05 * far, (near, far)
    assert np.abs(guided[d:] - free[d:]).max() > 1e-3  # a different chunk, not a copy of the leftover


def test_every_sample_is_guided_by_the_one_leftover(record):
    """Samples share the prefix and the guide: sample 0 of a batch is the single-sample chunk."""
    g = record.guide("linear", 0)
    other = torch.randn(1, *record.rtc["noise"].shape[1:], generator=torch.Generator().manual_seed(5))
    both = record.replay.policy.act(record.replay.inputs(0), noise=torch.cat([record.rtc["noise"][0:1], other]),
                                    guide=g).raw_actions
    assert np.abs(both[0, :, :ACTION_DIM] - record.rtc["linear.actions_normalized"][0].numpy()).max() <= TOL
    assert _distance(both[1], g.leftover, g.inference_delay) < 0.1  # the other noise joins the leftover too


def test_zero_delay_with_the_zeros_schedule_changes_nothing(record):
    g = record.guide("zeros", 0, inference_delay=0)
    assert np.array_equal(record.act(0, g).raw_actions, record.act(0, None).raw_actions)


def test_a_full_width_torch_leftover_is_accepted(record):
    """The leftover may carry every model dimension (as PolicyOutput.raw_actions does), as a tensor."""
    g = record.guide("linear", 0)
    full = torch.zeros(g.leftover.shape[0], record.replay.policy.action_dim)
    full[:, :ACTION_DIM] = torch.from_numpy(g.leftover)
    a = record.act(0, g).raw_actions
    b = record.act(0, ChunkGuide(full, g.inference_delay, g.execution_horizon, g.schedule, g.max_guidance_weight)).raw_actions
    assert np.array_equal(a, b)


def test_the_guided_cuda_graph_layout_gives_lerobots_chunk(record):
    """The loop the CUDA graph captures (graph buffer layout, guide as tensors), run eagerly on the CPU."""
    policy, be = record.replay.policy, record.replay.policy.backend
    ctx = policy.prefill(record.replay.inputs(1))
    sched, terms = be.schedule()
    guide = record.guide("exp", 1).tensors((policy.num_waypoints, policy.action_dim))
    with torch.inference_mode():
        cos, sin, mask, off, kv_len = be._suffix_tables(ctx, 1, graph=True)
        x = be._steps(sched, terms, off, kv_len, record.rtc["noise"][1:2], cos, sin, mask, *be._guide_inputs(sched, guide))
    assert float((x[0, :, :ACTION_DIM] - record.rtc["exp.actions_normalized"][1]).abs().max()) <= TOL


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA graph needs a CUDA GPU (none here)")
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_guided_cuda_graph_gives_lerobots_chunk(variant):
    rec = Record(variant)
    policy = Policy.from_pretrained(VARIANTS[variant], device="cuda", dtype="float32")
    ctx = policy.prefill(rec.replay.inputs(0))
    noise = rec.rtc["noise"][0:1].cuda()
    for case in CASES:  # one captured graph, a new guide each time (static inputs, no re-capture)
        out = policy.denoise(ctx, noise=noise, guide=rec.guide(case, 0))
        err = float((out[0, :, :ACTION_DIM].cpu() - rec.rtc[f"{case}.actions_normalized"][0]).abs().max())
        assert err <= TOL, f"{case}: {err:.2e}"
    free = policy.denoise(ctx, noise=noise)
    assert float((free[0, :, :ACTION_DIM].cpu() - rec.rtc["unguided.actions_normalized"][0]).abs().max()) <= TOL
    assert policy.backend.use_cuda_graph and sorted(k[3] for k in policy.backend._graphs) == [False, True]


# ------------------------------------------------------------------ another family, the other flow direction
@pytest.fixture(scope="module")
def driving():
    """The kv_expert family (Alpamayo-R1's layout): noise at t=0, actions at t=1."""
    from vla_ros.runtime.tools.synthetic import synthetic_inputs

    policy = Policy.from_pretrained("random:tiny")
    assert policy.config.flow.direction == "noise_to_data"
    h, w = policy.image_size_hw
    tick = synthetic_inputs(0, speed=7.0, yaw_rate=0.05, height=h, width=w, seed=0)
    gen = torch.Generator().manual_seed(3)
    noise = [policy.make_noise(1, gen) for _ in range(2)]
    previous = policy.act(tick, noise=noise[0]).raw_actions[0]
    return policy, tick, noise[1], ChunkGuide(previous[6:], inference_delay=4, execution_horizon=16)


def test_guidance_works_in_the_other_flow_direction(driving):
    policy, tick, noise, g = driving
    guided = policy.act(tick, noise=noise, guide=g).raw_actions[0]
    free = policy.act(tick, noise=noise).raw_actions[0]
    near, far = _distance(guided, g.leftover, 4), _distance(free, g.leftover, 4)
    assert near < 0.05 * far, (near, far)


def test_onnxruntime_applies_the_guide_like_torch(driving, tmp_path_factory, monkeypatch):
    pytest.importorskip("onnxruntime")
    policy, tick, noise, g = driving
    monkeypatch.setenv("VLA_ROS_CACHE", str(tmp_path_factory.getbasetemp() / "vla_ros_cache"))  # shared export
    ort = Policy.from_pretrained("random:tiny", backend="onnxruntime", threads=1)
    a = ort.act(tick, noise=noise, guide=g).raw_actions
    b = policy.act(tick, noise=noise, guide=g).raw_actions
    assert np.abs(a - b).max() < 1e-4
    assert np.abs(a - ort.act(tick, noise=noise).raw_actions).max() > 1e-2  # the guide was applied


def test_tensorrt_refuses_a_guide_instead_of_ignoring_it():
    from vla_ros.runtime.backends.protocol import BackendError
    from vla_ros.runtime.backends.tensorrt_backend import TensorRTBackend

    tensors = ChunkGuide(np.zeros((10, 6), np.float32), 2, 8).tensors((50, 32))
    with pytest.raises(BackendError, match="real-time chunking.*tensorrt"):
        TensorRTBackend.denoise(None, None, torch.zeros(1, 50, 32), None, guide=tensors)  # refused before any work


# ------------------------------------------------------------------ bad guides
def test_guide_crosses_a_process_pipe_intact(record):
    g = record.guide("ones", 0)
    back = pickle.loads(pickle.dumps(g))
    assert np.array_equal(back.leftover, g.leftover) and back.schedule == g.schedule


@pytest.mark.parametrize("changes, message", [
    (dict(leftover=np.zeros((3,))), r"\(T_prev >= 1, A_prev >= 1\)"),
    (dict(leftover=np.zeros((0, 6))), r"\(T_prev >= 1, A_prev >= 1\)"),
    (dict(leftover=np.zeros((3, 6), dtype=np.int64)), "floating point"),
    (dict(leftover=[[0.0] * 6]), "numpy array or torch tensor"),
    (dict(leftover=np.full((3, 6), np.nan)), "NaN"),
    (dict(leftover=torch.full((3, 6), float("inf"))), "NaN or inf"),
    (dict(inference_delay=-1), "inference_delay must be >= 0"),
    (dict(inference_delay=2.5), "inference_delay must be an int"),
    (dict(execution_horizon=0), "execution_horizon must be >= 1"),
    (dict(schedule="cosine"), "schedule must be one of"),
    (dict(max_guidance_weight=0.0), "max_guidance_weight"),
    (dict(max_guidance_weight=float("nan")), "max_guidance_weight"),
])
def test_bad_guides_are_refused(record, changes, message):
    with pytest.raises(PolicyInputError, match=message):
        record.guide("linear", 0, **changes)


def test_guides_that_do_not_fit_the_chunk_are_refused(record):
    policy = record.replay.policy
    with pytest.raises(PolicyInputError, match=r"does not fit the chunk \(50, 32\)"):
        record.act(0, record.guide("linear", 0, leftover=np.zeros((51, 6), np.float32)))
    with pytest.raises(PolicyInputError, match="does not fit the chunk"):
        record.act(0, record.guide("linear", 0, leftover=np.zeros((5, policy.action_dim + 1), np.float32)))
    with pytest.raises(PolicyInputError, match="guide must be a vla_ros.runtime.rtc.ChunkGuide"):
        record.act(0, {"leftover": np.zeros((5, 6))})
