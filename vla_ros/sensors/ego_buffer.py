"""Ego poses from nav_msgs/Odometry and the ego history at a tick time t0.

The history is `steps` poses at `interval` spacing ending at t0, interpolated (linear position,
slerp orientation) and expressed in the ego frame at t0 (x forward, y left, z up). Each message
is parsed once, on receipt: its pose goes into the history, and the newest one is also kept as an
EgoState (pose, yaw, speed) for the control layer's fallback.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_ros.sensors.drops import DropCounter
from vla_ros.sensors.geometry import quat_slerp, quat_to_matrix
from vla_ros.sensors.state_stream import StateStream, StateUnavailable


class EgoHistoryError(StateUnavailable):
    """The odometry buffer cannot give a history at t0. `kind` is a short, countable reason."""


@dataclass(frozen=True)
class EgoHistory:
    """Ego history ending at t0. Times are relative to t0 in seconds (oldest first)."""

    times_s: np.ndarray  # (N,)
    xyz: np.ndarray  # (N, 3) in the t0 ego frame
    rot: np.ndarray  # (N, 3, 3) in the t0 ego frame
    pose_t0_xyz: np.ndarray  # (3,) t0 pose in the odometry frame
    pose_t0_rot: np.ndarray  # (3, 3)


@dataclass(frozen=True)
class EgoState:
    """Latest ego state from odometry, in the odometry frame."""

    stamp_ns: int
    xyz: np.ndarray  # (3,)
    yaw: float
    speed: float  # m/s along the heading (twist.linear.x)


def pose_from_odometry(msg: Any) -> tuple[np.ndarray, np.ndarray]:
    """nav_msgs/Odometry -> position (3,), quaternion (x, y, z, w) (4,); ValueError if unusable."""
    try:
        p = msg.pose.pose.position
        q = msg.pose.pose.orientation
        xyz = np.array([p.x, p.y, p.z], dtype=np.float64)
        quat = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    except (AttributeError, TypeError) as exc:
        raise ValueError("not a nav_msgs/Odometry (pose.pose.position/orientation)") from exc
    if not (np.all(np.isfinite(xyz)) and np.all(np.isfinite(quat))):
        raise ValueError("pose contains NaN or inf")
    norm = float(np.linalg.norm(quat))
    if not 0.5 < norm < 1.5:
        raise ValueError(f"orientation quaternion has norm {norm:.3g}")
    return xyz, quat / norm


def ego_state_from_odometry(msg: Any, stamp_ns: int) -> tuple[EgoState, np.ndarray]:
    """nav_msgs/Odometry -> (EgoState, quaternion (x, y, z, w)): yaw from the orientation, speed
    from twist.linear.x (0 when the message has no twist). ValueError if unusable."""
    xyz, quat = pose_from_odometry(msg)
    x, y, z, w = quat
    yaw = float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))
    try:
        speed = float(msg.twist.twist.linear.x)
    except AttributeError:
        speed = 0.0
    except (TypeError, ValueError) as exc:
        raise ValueError(f"twist.linear.x is not a number: {exc}") from exc
    if not math.isfinite(speed):
        raise ValueError("twist contains NaN or inf")
    return EgoState(stamp_ns, xyz, yaw, speed), quat


class EgoBuffer(StateStream):
    def __init__(self, topic: str, keep_ns: int, max_gap_ns: int, max_extrapolation_ns: int, drops: DropCounter) -> None:
        super().__init__(topic, keep_ns, drops)
        self.max_gap_ns = max_gap_ns
        self.max_extrapolation_ns = max_extrapolation_ns
        self._xyz: list[np.ndarray] = []
        self._quat: list[np.ndarray] = []
        self._newest: EgoState | None = None

    def newest(self) -> EgoState | None:
        """The state of the newest stored message (None when the buffer is empty)."""
        return self._newest

    def add(self, msg: Any, stamp: int) -> bool:
        """Store a pose whose stamp the caller has checked to be newer than `newest_ns`."""
        try:
            state, quat = ego_state_from_odometry(msg, stamp)
        except ValueError as exc:
            self.drop("bad_pose", str(exc))
            return False
        self._newest = state
        self._stamps.append(stamp)
        self._xyz.append(state.xyz)
        self._quat.append(quat)
        self.accepted += 1
        self._keep_window(self._xyz, self._quat)
        return True

    def reset(self) -> None:
        self._newest = None
        self._stamps.clear()
        self._xyz.clear()
        self._quat.clear()

    def history(self, t0_ns: int, steps: int, interval_ns: int) -> EgoHistory:
        """Poses at t0 - (steps-1-i)*interval, i = 0..steps-1, in the t0 ego frame."""
        if len(self._stamps) < 2:
            raise EgoHistoryError("ego_missing", f"{len(self._stamps)} odometry message(s) buffered")
        stamps = np.asarray(self._stamps, dtype=np.int64)
        xyz_all = np.stack(self._xyz)
        quat_all = np.stack(self._quat)
        times = t0_ns - interval_ns * np.arange(steps - 1, -1, -1, dtype=np.int64)
        if times[0] < stamps[0]:
            raise EgoHistoryError(
                "ego_history_short", f"history needs odometry from {(t0_ns - times[0]) / 1e9:.2f} s before t0, buffer starts {(t0_ns - stamps[0]) / 1e9:.2f} s before"
            )
        if times[-1] > stamps[-1] + self.max_extrapolation_ns:
            raise EgoHistoryError("ego_stale", f"newest odometry is {(t0_ns - stamps[-1]) / 1e9:.3f} s older than t0")
        # Bracketing indices; points past the newest message extrapolate from the last two.
        hi = np.clip(np.searchsorted(stamps, times, side="left"), 1, len(stamps) - 1)
        lo = hi - 1
        gaps = stamps[hi] - stamps[lo]
        inside = times <= stamps[-1]
        if np.any(inside & (gaps > self.max_gap_ns)):
            worst = int(gaps[inside].max())
            raise EgoHistoryError("ego_gap", f"odometry gap of {worst / 1e9:.3f} s inside the history window")
        frac = (times - stamps[lo]) / gaps
        xyz = xyz_all[lo] + frac[:, None] * (xyz_all[hi] - xyz_all[lo])
        quat = quat_slerp(quat_all[lo], quat_all[hi], np.clip(frac, 0.0, 1.0))
        rot = quat_to_matrix(quat)
        r0, p0 = rot[-1], xyz[-1]
        local_xyz = (xyz - p0) @ r0  # row-wise R0^T (p - p0)
        local_rot = np.einsum("ji,njk->nik", r0, rot)  # R0^T R_i
        return EgoHistory(
            times_s=(times - t0_ns) / 1e9,
            xyz=local_xyz,
            rot=local_rot,
            pose_t0_xyz=p0,
            pose_t0_rot=r0,
        )


def history_span_ns(steps: int, interval_s: float) -> int:
    return int(math.ceil((steps - 1) * interval_s * 1e9))
