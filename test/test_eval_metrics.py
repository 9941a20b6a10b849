"""Metrics, baselines, ground truth and camera projection against hand-computed cases (no policy)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bagtools import small_config

from vla_ros.replay.bag_io import BagWriter, read_messages
from vla_ros.replay.baselines import baseline_predictions, estimate_motion
from vla_ros.replay.camera_model import CameraModel, StaticTransforms
from vla_ros.replay.ground_truth import Future, FutureUnavailable, OdometryTrack
from vla_ros.replay.metrics import latency_summary, summarize, trajectory_errors
from vla_ros.replay.pattern_bag import ArcMotion, PatternBagSpec, write_pattern_bag
from vla_ros.ros import messages
from vla_ros.sensors.ego_buffer import EgoHistory
from vla_ros.sensors.geometry import quat_to_matrix, yaw_to_quat

DT = 0.1
T = 64
TIMES = (np.arange(T) + 1) * DT


def arc_history(motion: ArcMotion, t0: float, steps: int = 16) -> EgoHistory:
    """The exact history of an ArcMotion ending at t0, in the t0 ego frame."""
    times = t0 - DT * np.arange(steps - 1, -1, -1)
    poses = [motion.pose(t) for t in times]
    xyz = np.array([p for p, _ in poses])
    rot = quat_to_matrix(yaw_to_quat(np.array([y for _, y in poses])))
    r0, p0 = rot[-1], xyz[-1]
    return EgoHistory(times - t0, (xyz - p0) @ r0, np.einsum("ji,njk->nik", r0, rot), p0, r0)


def arc_future(motion: ArcMotion, t0: float) -> Future:
    """The exact future at t0 + (i+1) dt in the t0 ego frame."""
    p0, yaw0 = motion.pose(t0)
    r0 = quat_to_matrix(yaw_to_quat(yaw0))
    poses = [motion.pose(t0 + t) for t in TIMES]
    odom = np.array([p for p, _ in poses])
    quat = yaw_to_quat(np.array([y for _, y in poses]))
    rot = np.einsum("ji,njk->nik", r0, quat_to_matrix(quat))
    return Future(np.round((t0 + TIMES) * 1e9).astype(np.int64), (odom - p0) @ r0, rot, odom, quat)


def cv_error_on_arc(v: float, w: float, t: np.ndarray) -> np.ndarray:
    """Closed form: straight line (v t, 0) against the arc (r sin wt, r (1 - cos wt)), r = v / w."""
    r = v / w
    return np.hypot(r * np.sin(w * t) - v * t, r * (1 - np.cos(w * t)))


@pytest.mark.parametrize("speed,yaw_rate", [(10.0, 0.1), (8.0, -0.25), (15.0, 0.0), (-3.0, 0.05)])
def test_baselines_on_a_constant_arc(speed: float, yaw_rate: float) -> None:
    motion = ArcMotion(speed, yaw_rate)
    hist = arc_history(motion, t0=3.0)
    est = estimate_motion(hist)
    assert est.speed == pytest.approx(speed, abs=1e-9)
    assert est.yaw_rate == pytest.approx(yaw_rate, abs=1e-9)
    future = arc_future(motion, 3.0)
    preds = baseline_predictions(hist, TIMES)
    # CV + yaw rate is the exact model of this motion.
    np.testing.assert_allclose(preds["constant_velocity_yaw_rate"], future.xyz * [1, 1, 0], atol=1e-8)
    cv = trajectory_errors(preds["constant_velocity"], future)
    expected = cv_error_on_arc(speed, yaw_rate, TIMES) if yaw_rate else np.zeros(T)
    np.testing.assert_allclose(cv.displacement[0], expected, atol=1e-8)


def test_errors_split_into_lateral_and_longitudinal() -> None:
    # Ground truth: straight ahead at 10 m/s. Prediction: 1 m to the left and 2 m ahead everywhere.
    motion = ArcMotion(10.0, 0.0)
    future = arc_future(motion, 1.0)
    pred = future.xyz + np.array([2.0, 1.0, 0.0])
    e = trajectory_errors(pred, future)
    np.testing.assert_allclose(e.lateral[0], 1.0)
    np.testing.assert_allclose(e.longitudinal[0], 2.0)
    np.testing.assert_allclose(e.displacement[0], np.sqrt(5.0))
    # On a left turn, "left of the path" rotates with the path: offset along the local normal.
    turn = arc_future(ArcMotion(10.0, 0.3), 0.0)
    normal = turn.rot[:, :3, 1]
    e2 = trajectory_errors(turn.xyz - 0.5 * normal, turn)
    np.testing.assert_allclose(e2.lateral[0], -0.5, atol=1e-12)
    np.testing.assert_allclose(e2.longitudinal[0], 0.0, atol=1e-12)


def test_summary_by_hand() -> None:
    future = arc_future(ArcMotion(10.0, 0.0), 0.0)
    # Tick 1: error grows linearly 0.1 m per waypoint along y (lateral). Tick 2: no error.
    grow = future.xyz + np.stack([np.zeros(T), 0.1 * (np.arange(T) + 1), np.zeros(T)], axis=1)
    ticks = [trajectory_errors(grow, future), trajectory_errors(future.xyz, future)]
    s = summarize(ticks, DT)
    assert s["ticks"] == 2
    assert s["ade"] == pytest.approx(np.mean(0.1 * (np.arange(T) + 1)) / 2)  # 3.25 / 2
    assert s["fde"] == pytest.approx(6.4 / 2)
    assert s["fde_1s"] == pytest.approx(1.0 / 2)
    assert s["ade_1s"] == pytest.approx(0.55 / 2)
    assert s["fde_5s"] == pytest.approx(5.0 / 2)
    assert s["lateral_ade"] == pytest.approx(s["ade"])
    assert s["longitudinal_ade"] == pytest.approx(0.0)
    assert s["miss_rate"] == pytest.approx(0.5)  # 6.4 m > 2 m, 0 m not
    assert len(s["displacement_by_step_m"]) == T and "min_ade" not in s
    # Two samples: the second is perfect, so minADE/minFDE are 0 while ADE uses the first sample.
    both = trajectory_errors(np.stack([grow, future.xyz]), future)
    s2 = summarize([both], DT, with_min=True)
    assert s2["ade"] == pytest.approx(3.25) and s2["min_ade"] == 0.0 and s2["min_fde"] == 0.0
    assert summarize([], DT)["ade"] is None


def test_latency_summary() -> None:
    s = latency_summary({"total": list(range(1, 101)), "reasoning": []})
    assert s["total"]["p50"] == pytest.approx(50.5)
    assert s["total"]["max"] == 100 and s["total"]["count"] == 100
    assert s["total"]["p99"] == pytest.approx(99.01)
    assert s["reasoning"]["count"] == 0 and s["reasoning"]["p50"] is None


def test_odometry_track_future_is_the_recorded_arc(tmp_path: Path) -> None:
    cfg = small_config()
    motion = ArcMotion(12.0, 0.2)
    bag = tmp_path / "arc"
    write_pattern_bag(bag, cfg, PatternBagSpec(duration_s=8.0, height=32, width=48, start_s=100.0, motion=motion))
    track = OdometryTrack.from_bag(bag, cfg.ego.odometry_topic, max_gap_ns=250_000_000, time_jump_ns=10**9)
    assert track.num_segments == 1 and track.dropped == 0
    t0 = 1.0
    p0, yaw0 = motion.pose(t0)
    fut = track.future(round((100 + t0) * 1e9), round((100 + t0) * 1e9), p0, quat_to_matrix(yaw_to_quat(yaw0)), T, DT)
    # 50 Hz odometry (jittered stamps) interpolated linearly: within a few millimetres of the arc.
    np.testing.assert_allclose(fut.xyz, arc_future(motion, t0).xyz, atol=5e-3)
    with pytest.raises(FutureUnavailable) as exc:
        track.future(round(102e9), round(102e9), p0, np.eye(3), T, DT)  # 102 + 6.4 > 108
    assert exc.value.key == "future_short"


def test_odometry_gaps_and_time_jumps(tmp_path: Path) -> None:
    bag = tmp_path / "odom"
    topic = "/ego/odom"
    with BagWriter(bag) as w:
        # Segment 1: 0..10 s at 10 Hz with a 1 s hole at 5..6 s; then the clock jumps back (a loop).
        for k in range(101):
            t = k / 10
            if 5.0 < t < 6.0:
                continue
            w.write(topic, messages.odometry(round((50 + t) * 1e9), (t, 0, 0), (0, 0, 0, 1)), round((50 + t) * 1e9))
        for k in range(101):
            t = k / 10
            w.write(topic, messages.odometry(round((20 + t) * 1e9), (2 * t, 0, 0), (0, 0, 0, 1)), round((60.1 + t) * 1e9))
    track = OdometryTrack(list(read_messages(bag, [topic])), max_gap_ns=250_000_000, time_jump_ns=10**9)
    assert track.num_segments == 2
    with pytest.raises(FutureUnavailable) as exc:
        track.future(round(51e9), round(51e9), np.array([1.0, 0, 0]), np.eye(3), 64, 0.1)
    assert exc.value.key == "future_gap"
    ok = track.future(round(50.5e9), round(50.5e9), np.array([0.5, 0, 0]), np.eye(3), 40, 0.1)  # ends at 54.5 s
    np.testing.assert_allclose(ok.xyz[:, 0], 0.1 * np.arange(1, 41), atol=1e-9)
    # After the jump, ticks (by receive time) take their future from the second segment.
    after = track.future(round(61e9), round(21e9), np.array([2.0, 0, 0]), np.eye(3), 64, 0.1)
    np.testing.assert_allclose(after.xyz[:, 0], 0.2 * np.arange(1, 65), atol=1e-9)


def test_static_transforms_and_projection() -> None:
    tf = StaticTransforms()
    # base_link -> camera body 2 m ahead, 1.5 m up; body -> optical (z forward, x right, y down).
    body_from_optical = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    q_opt = _matrix_quat(body_from_optical)
    tf.add(messages.tf_message([
        messages.transform_stamped(1, "base_link", "cam", (2.0, 0.0, 1.5), (0, 0, 0, 1)),
        messages.transform_stamped(1, "cam", "cam_optical", (0.0, 0.0, 0.0), q_opt),
    ]))
    rot, xyz = tf.lookup("base_link", "/cam_optical")
    np.testing.assert_allclose(xyz, [2.0, 0.0, 1.5], atol=1e-12)
    np.testing.assert_allclose(rot, body_from_optical, atol=1e-12)
    assert tf.lookup("base_link", "nowhere") is None
    k = np.array([[100.0, 0, 49.5], [0, 100.0, 31.5], [0, 0, 1]])
    cam = CameraModel("front", 100, 64, k, rot, xyz)
    # A ground point 12 m ahead: depth 10 m, 1.5 m below the camera -> v = cy + 100 * 1.5 / 10.
    uv, depth = cam.project(np.array([[12.0, 0.0, 0.0], [12.0, 1.0, 1.5]]), (64, 100))
    np.testing.assert_allclose(depth, [10.0, 10.0])
    np.testing.assert_allclose(uv, [[49.5, 46.5], [39.5, 31.5]])
    # K is scaled to a half-size image about pixel edges.
    uv2, _ = cam.project(np.array([[12.0, 0.0, 0.0]]), (32, 50))
    np.testing.assert_allclose(uv2, [[(49.5 + 0.5) / 2 - 0.5, (46.5 + 0.5) / 2 - 0.5]])


def _matrix_quat(m: np.ndarray) -> tuple[float, float, float, float]:
    """Rotation matrix -> quaternion (x, y, z, w), from the diagonal with signs from the skew part."""
    w = np.sqrt(max(0.0, 1 + m[0, 0] + m[1, 1] + m[2, 2])) / 2
    x = np.copysign(np.sqrt(max(0.0, 1 + m[0, 0] - m[1, 1] - m[2, 2])) / 2, m[2, 1] - m[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1 - m[0, 0] + m[1, 1] - m[2, 2])) / 2, m[0, 2] - m[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1 - m[0, 0] - m[1, 1] + m[2, 2])) / 2, m[1, 0] - m[0, 1])
    return float(x), float(y), float(z), float(w)
