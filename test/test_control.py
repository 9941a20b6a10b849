"""The control layer: re-timing, validation, fallback and watchdog, on exact cases."""
import numpy as np
import pytest

from vla_ros.config import Config
from vla_ros.control.controller import TrajectoryController
from vla_ros.control.fallback import stopping_trajectory
from vla_ros.control.trajectory import PlannedTrajectory, retime
from vla_ros.control.validation import RejectedOutput, validate_trajectory
from vla_ros.sensors.ego_buffer import EgoState

S = 1_000_000_000
T0 = 500 * S


def _rotz(yaw):
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def straight(t0=T0, speed=10.0, n=64, dt=0.1, pose=(100.0, 50.0, 0.0), yaw=np.pi / 2):
    x = speed * dt * np.arange(1, n + 1)
    return PlannedTrajectory(t0, dt, np.stack([x, 0 * x, 0 * x], 1), np.array(pose), _rotz(yaw))


def circle(radius=20.0, speed=8.0, n=64, dt=0.1):
    th = speed * dt * np.arange(1, n + 1) / radius
    xyz = np.stack([radius * np.sin(th), radius * (1 - np.cos(th)), 0 * th], 1)
    return PlannedTrajectory(T0, dt, xyz, np.zeros(3), np.eye(3), rot=np.stack([_rotz(a) for a in th]))


def test_retime_drops_elapsed_points_and_transforms_to_odom():
    out = retime(straight(), T0 + S // 4)
    # ego heading +y in odom at (100, 50): 0.25 s at 10 m/s = 2.5 m further along +y
    np.testing.assert_allclose(out.xyz[0], [100.0, 52.5, 0.0], atol=1e-9)
    assert out.times_ns[0] == T0 + S // 4
    assert np.all(np.diff(out.times_ns) == S // 10)
    assert out.times_ns[-1] <= T0 + 64 * S // 10 and len(out) == 62
    np.testing.assert_allclose(out.yaw, np.pi / 2)
    np.testing.assert_allclose(out.speed, 10.0, atol=1e-6)
    assert out.stamp_ns == T0 and out.source == "policy"


def test_retime_before_t0_starts_at_t0_and_uses_rotations():
    traj = circle()
    out = retime(traj, T0 - S)
    assert out.times_ns[0] == T0 and len(out) == 65
    th_last = 8.0 * 6.4 / 20.0
    assert out.yaw[-1] == pytest.approx(th_last)


def test_validation_accepts_physical_paths_and_rejects_the_rest():
    validate_trajectory(straight(), 9.8, 0.33)
    validate_trajectory(circle(radius=5.0), 9.8, 0.33)
    with pytest.raises(RejectedOutput) as info:
        validate_trajectory(circle(radius=2.0), 9.8, 0.33)
    assert info.value.reason == "curvature_limit"
    bad = straight()
    xyz = bad.xyz.copy()
    xyz[30:, 0] += 5.0  # a 5 m jump in 0.1 s
    with pytest.raises(RejectedOutput) as info:
        validate_trajectory(PlannedTrajectory(T0, 0.1, xyz, bad.pose_t0_xyz, bad.pose_t0_rot), 9.8, 0.33)
    assert info.value.reason == "acceleration_limit"
    xyz[3, 1] = np.nan
    with pytest.raises(RejectedOutput) as info:
        validate_trajectory(PlannedTrajectory(T0, 0.1, xyz, bad.pose_t0_xyz, bad.pose_t0_rot), 9.8, 0.33)
    assert info.value.reason == "not_finite"


def test_stopping_trajectory_is_comfortable_and_stops():
    ego = EgoState(T0, np.array([1.0, 2.0, 0.0]), np.pi, 12.0)
    out = stopping_trajectory(ego, T0, deceleration=2.0, ramp_s=0.5)
    assert out.source == "fallback" and out.stamp_ns == T0
    assert np.all(np.diff(out.speed) <= 1e-12) and out.speed[0] == 12.0 and out.speed[-1] == 0.0
    assert np.all(out.acceleration >= -2.0 - 1e-9)
    # stopping distance: v^2 / (2a) plus the extra distance covered while the ramp builds up
    dist = np.linalg.norm(out.xyz[-1] - out.xyz[0])
    ramp_extra = 12.0 * 0.5 / 2 - 2.0 * 0.5**2 / 6  # ~ v * ramp/2 minus the ramp's own braking
    assert dist == pytest.approx(12.0**2 / 4.0 + ramp_extra, rel=0.02)
    # straight back along -x (yaw = pi)
    np.testing.assert_allclose(out.xyz[:, 1], 2.0, atol=1e-9)
    assert out.xyz[-1, 0] < out.xyz[0, 0]


def test_controller_fallback_and_recovery_in_any_clock():
    for base in (T0, 10 * S):  # wall-clock-like and sim-time-like origins behave the same
        cfg = Config()
        ctl = TrajectoryController(cfg)
        ctl.note_ego(EgoState(base, np.zeros(3), 0.0, 10.0))
        step = ctl.step(base)
        assert step.fallback_active and set(step.reasons) == {"no_input", "no_output"}
        assert step.command.source == "fallback"
        traj = straight(t0=base, pose=(0, 0, 0), yaw=0.0)
        ctl.note_input(base)
        ctl.accept(traj, base + S // 10)
        step = ctl.step(base + S // 5)
        assert not step.fallback_active and step.command.source == "policy"
        # cameras stop: no complete stack for longer than max_input_age_s (0.5 s)
        step = ctl.step(base + 7 * S // 10)
        assert step.fallback_active and "input_stale" in step.reasons
        assert step.command.times_ns[0] == base + 7 * S // 10
        # inputs come back and a new output arrives
        ctl.note_input(base + 8 * S // 10)
        ctl.accept(straight(t0=base + 8 * S // 10, pose=(0, 0, 0), yaw=0.0), base + 9 * S // 10)
        step = ctl.step(base + 9 * S // 10)
        assert not step.fallback_active
        assert ctl.stats.fallback_activations == 2 and ctl.stats.accepted == 2


def test_late_older_output_never_replaces_a_newer_one_but_a_clock_jump_resets():
    ctl = TrajectoryController(Config())
    ctl.note_input(T0)
    ctl.accept(straight(t0=T0), T0 + 1)
    ctl.accept(straight(t0=T0 - S // 10), T0 + 2)
    assert ctl.stats.superseded == 1 and ctl.stats.accepted == 1
    # a looped bag: t0 goes back by 60 s
    ctl.note_input(T0 - 60 * S)
    ctl.accept(straight(t0=T0 - 60 * S), T0 - 60 * S + 1)
    assert ctl.stats.accepted == 2
    assert not ctl.step(T0 - 60 * S + S // 10).fallback_active


def test_rejected_output_is_counted_and_the_previous_one_kept():
    ctl = TrajectoryController(Config())
    ctl.note_input(T0)
    ctl.accept(straight(t0=T0), T0)
    bad = straight(t0=T0 + S // 10)
    xyz = bad.xyz.copy()
    xyz[5, 0] = np.inf
    with pytest.raises(RejectedOutput):
        ctl.accept(PlannedTrajectory(bad.t0_ns, 0.1, xyz, bad.pose_t0_xyz, bad.pose_t0_rot), T0 + S // 10)
    assert ctl.stats.rejected == {"not_finite": 1}
    step = ctl.step(T0 + S // 5)
    assert step.command.stamp_ns == T0 and not step.fallback_active


def unicycle(accel, curvature, v0):
    """A kv_expert-style output: the action space's own integration of physical (a, k) per step,
    from speed v0 at the origin heading +x, with the actions named as the checkpoint names them."""
    import torch

    from vla_ros.model.action_space import ActionStats, UnicycleAccelCurvature
    from vla_ros.model.config import ActionSpaceConfig

    phys = np.stack([np.asarray(accel, float), np.asarray(curvature, float)], -1)
    space = UnicycleAccelCurvature(ActionSpaceConfig(num_waypoints=len(phys), clip=False), ActionStats())
    xyz, rot = space.integrate(torch.from_numpy(phys)[None], torch.tensor([float(v0)], dtype=torch.float64),
                               torch.zeros(1, 3, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    return PlannedTrajectory(T0, 0.1, xyz[0].numpy(), np.zeros(3), np.eye(3), rot=rot[0].numpy(), actions=phys,
                             action_names=("acceleration", "curvature"), action_units=("m/s^2", "1/m"))


def _reason(traj, max_a=9.8, max_k=0.33):
    try:
        validate_trajectory(traj, max_a, max_k)
    except RejectedOutput as exc:
        return exc.reason
    return None


def test_named_actions_are_checked_against_the_limits_at_every_step():
    n = 64
    assert _reason(unicycle(np.full(n, -9.8), np.full(n, 0.33), 30.0)) is None  # at the limits: accepted
    spike = np.zeros(n)
    spike[0] = 11.0  # the first step: finite differences cannot see it (the speed at t0 is unknown)
    traj = unicycle(spike, np.zeros(n), 10.0)
    assert _reason(traj) == "acceleration_limit"
    assert _reason(PlannedTrajectory(T0, 0.1, traj.xyz, traj.pose_t0_xyz, traj.pose_t0_rot, rot=traj.rot)) is None
    # curvature beyond the limit while moving is refused; standing still it steers nothing
    k = np.zeros(n)
    k[40] = 0.5
    assert _reason(unicycle(np.zeros(n), k, 5.0)) == "curvature_limit"
    assert _reason(unicycle(np.zeros(n), k, 0.0)) is None
    # the safety limits are what counts, not the training bounds: a tighter deployment refuses more
    assert _reason(unicycle(np.full(n, 2.0), np.zeros(n), 5.0), max_a=1.5) == "acceleration_limit"
    with pytest.raises(RejectedOutput, match=r"acceleration action 11 m/s\^2 at step 0"):
        validate_trajectory(unicycle(spike, np.zeros(n), 10.0), 9.8, 0.33)


def test_named_actions_that_cannot_be_trusted_are_refused():
    good = unicycle(np.zeros(8), np.zeros(8), 5.0)

    def with_actions(**kw):
        fields = dict(actions=good.actions, action_names=good.action_names, action_units=good.action_units) | kw
        return PlannedTrajectory(T0, 0.1, good.xyz, good.pose_t0_xyz, good.pose_t0_rot, rot=good.rot, **fields)

    bad = good.actions.copy()
    bad[3, 1] = np.nan
    assert _reason(with_actions(actions=bad)) == "not_finite"
    assert _reason(with_actions(actions=good.actions[:5])) == "malformed"  # 5 actions for 8 waypoints
    assert _reason(with_actions(action_units=("g", "1/m"))) == "malformed"  # a limit in m/s^2 says nothing about g
    assert _reason(with_actions(action_names=("acceleration",), action_units=("m/s^2",))) == "malformed"


def test_limits_a_family_does_not_name_come_from_finite_differences():
    tight = circle(radius=2.0)  # 0.5 1/m at 8 m/s
    n = len(tight.xyz)
    # an action chunk of other quantities: both limits from the waypoints, as without actions
    other = PlannedTrajectory(T0, 0.1, tight.xyz, tight.pose_t0_xyz, tight.pose_t0_rot, rot=tight.rot,
                              actions=np.zeros((n, 1)), action_names=("throttle",), action_units=("1",))
    assert _reason(other) == "curvature_limit"
    # only acceleration named: curvature still from the waypoints
    accel_only = PlannedTrajectory(T0, 0.1, tight.xyz, tight.pose_t0_xyz, tight.pose_t0_rot, rot=tight.rot,
                                   actions=np.zeros((n, 1)), action_names=("acceleration",), action_units=("m/s^2",))
    assert _reason(accel_only) == "curvature_limit"
    assert _reason(circle(radius=5.0)) is None


def test_the_controller_counts_action_rejections_under_the_same_keys():
    ctl = TrajectoryController(Config())
    ctl.note_input(T0)
    ok = unicycle(np.zeros(64), np.zeros(64), 10.0)
    ctl.accept(ok, T0)
    k = np.zeros(64)
    k[10] = -0.4
    bad = unicycle(np.zeros(64), k, 10.0)
    with pytest.raises(RejectedOutput):
        ctl.accept(PlannedTrajectory(T0 + S // 10, 0.1, bad.xyz, bad.pose_t0_xyz, bad.pose_t0_rot, rot=bad.rot,
                                     actions=bad.actions, action_names=bad.action_names, action_units=bad.action_units),
                   T0 + S // 10)
    assert ctl.stats.rejected == {"curvature_limit": 1}
    assert ctl.latest is ok
