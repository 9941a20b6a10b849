"""The policy served from a child process (the node's default): same outputs as in-process,
errors reported per call, a dead child replaced, a bad model reported at start."""
from __future__ import annotations

import dataclasses
import os
import signal

import numpy as np
import pytest
import torch

from vla_ros.runtime import Policy
from vla_ros.runtime.policy_process import PolicyProcess, PolicyProcessError, PolicySpec
from vla_ros.runtime.tools.synthetic import synthetic_inputs
from vla_ros.sensors.ego_buffer import EgoHistory
from vla_ros.sensors.frame_stack import FrameStack

MODEL = "models/drive-tiny"


def a_stack(seed: int) -> FrameStack:
    inp = synthetic_inputs(seed, height=64, width=128)
    hist = EgoHistory(times_s=(np.arange(16) - 15) * 0.1, xyz=inp.history_xyz, rot=inp.history_rot,
                      pose_t0_xyz=np.zeros(3), pose_t0_rot=np.eye(3))
    return FrameStack(t0_ns=inp.t0_ns, camera_names=inp.camera_names, offsets_s=(-0.3, -0.2, -0.1, 0.0),
                      images=inp.images, stamps_ns=inp.stamps_ns, history=hist, slot_error_ms=np.zeros((4, 4)))


@pytest.fixture(scope="module")
def served():
    with PolicyProcess(PolicySpec(MODEL, cpu_threads=1)) as p:
        yield p


def test_every_thread_of_the_policy_process_runs_at_the_requested_niceness():
    """The node's timers must preempt the policy: the child, its torch worker threads included
    (2 threads, after an inference started them), is `nice` lower."""
    want = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 3)
    with PolicyProcess(PolicySpec(MODEL, cpu_threads=2, nice=3)) as p:
        p.act(a_stack(1), steps=2)
        assert p.info["nice"] == want
        tids = os.listdir(f"/proc/{p.pid}/task")  # Linux keeps a niceness per thread
        assert len(tids) >= 2
        for tid in tids:
            assert os.getpriority(os.PRIO_PROCESS, int(tid)) == want


def test_outputs_equal_the_in_process_policy(served):
    local = Policy.from_pretrained(MODEL)
    noise = torch.randn(1, 64, 2, generator=torch.Generator().manual_seed(3))
    for seed in (1, 2):
        stack = a_stack(seed)
        want = local.act(stack, steps=10, noise=noise)
        got = served.act(stack, steps=10, noise=noise)
        assert got.t0_ns == want.t0_ns and got.dt == want.dt
        np.testing.assert_allclose(got.xyz, want.xyz, atol=1e-4)
        assert set(got.timings.as_dict()) == set(want.timings.as_dict())
    assert served.image_size_hw == local.image_size_hw and served.threads == 1
    assert served.config.name == local.config.name


def test_a_failed_inference_is_reported_and_the_next_one_runs(served):
    bad = dataclasses.replace(a_stack(1), images=np.zeros((3, 4, 64, 128, 3), np.uint8))  # 3 cameras
    with pytest.raises(PolicyProcessError, match="Error"):
        served.act(bad, steps=2)
    assert np.isfinite(served.act(a_stack(1), steps=2).xyz).all()


def test_a_dead_policy_process_is_replaced(served):
    pid = served.pid
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(PolicyProcessError, match="died"):
        served.act(a_stack(1), steps=2)
    assert np.isfinite(served.act(a_stack(2), steps=2).xyz).all()  # the next call starts a new child
    assert served.restarts == 1 and served.pid not in (None, pid)


def test_a_closed_policy_process_is_not_restarted():
    p = PolicyProcess(PolicySpec(MODEL, cpu_threads=1))
    child = p._proc
    p.close()
    assert not child.is_alive() and child.exitcode == 0  # told to stop, not killed
    with pytest.raises(PolicyProcessError, match="closed"):
        p.act(a_stack(1), steps=2)
    assert p.restarts == 0


def test_a_model_that_cannot_load_is_reported_at_start(tmp_path):
    with pytest.raises(PolicyProcessError, match="cannot load model .*no_such_model"):
        PolicyProcess(PolicySpec(str(tmp_path / "no_such_model")))


def test_zero_noise_scale_gives_one_deterministic_trajectory(served):
    from vla_ros.runtime.start_noise import start_noise

    assert start_noise(64, 2, 1, 1.0) is None  # scale 1: the policy draws its own noise, as before
    with pytest.raises(ValueError):
        start_noise(64, 2, 1, -0.5)
    a = served.act(a_stack(1), steps=10, noise=start_noise(64, 2, 1, 0.0))
    b = served.act(a_stack(1), steps=10, noise=start_noise(64, 2, 1, 0.0, torch.Generator().manual_seed(9)))
    np.testing.assert_array_equal(a.xyz, b.xyz)
    c = served.act(a_stack(1), steps=10)  # sampled
    assert not np.allclose(a.xyz, c.xyz)
    # the node's way: the scale goes to the policy process, which makes the noise itself
    np.testing.assert_array_equal(served.act(a_stack(1), steps=10, noise_scale=0.0).xyz, a.xyz)
    half = served.act(a_stack(1), steps=10, noise_scale=0.5)
    assert not np.allclose(half.xyz, a.xyz) and not np.allclose(half.xyz, c.xyz)


def test_only_new_frames_cross_to_the_policy_process(served):
    """Consecutive ticks share 3 of 4 frames per camera: the child keeps them, only the newest
    frame of each camera is sent, and the outputs equal the in-process policy's."""
    local = Policy.from_pretrained(MODEL)
    noise = torch.randn(1, 64, 2, generator=torch.Generator().manual_seed(5))
    served.act(a_stack(7), steps=2)  # whatever the child held before: now ticks 7..10
    sent, reused = served.frames_sent, served.frames_reused
    for seed in (8, 9):
        want = local.act(a_stack(seed), steps=4, noise=noise)
        got = served.act(a_stack(seed), steps=4, noise=noise)
        np.testing.assert_allclose(got.xyz, want.xyz, atol=1e-4)
    assert (served.frames_sent - sent, served.frames_reused - reused) == (8, 24)
    # a tick with other frames entirely (a jump back) sends them all, and is still right
    want = local.act(a_stack(1), steps=4, noise=noise)
    np.testing.assert_allclose(served.act(a_stack(1), steps=4, noise=noise).xyz, want.xyz, atol=1e-4)
    assert served.frames_sent - sent == 8 + 16
