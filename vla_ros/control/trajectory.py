"""Trajectories as the policy emits them (t0 ego frame) and as the node publishes them
(odometry frame, re-timed to now)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PlannedTrajectory:
    """A policy output: waypoints at t0 + (i+1)*dt in the ego frame at t0 (x fwd, y left, z up).

    xyz: (N, 3); rot: (N, 3, 3) or None; pose_t0: where the ego frame at t0 is in odom.
    actions: (N, A) the model's own physical actions (step i ends at waypoint i), named by
    `action_names` in `action_units` as the checkpoint declares them (validation checks the
    ones it has limits for); None when the producer has none.
    """

    t0_ns: int
    dt_s: float
    xyz: np.ndarray
    pose_t0_xyz: np.ndarray  # (3,)
    pose_t0_rot: np.ndarray  # (3, 3)
    rot: np.ndarray | None = None
    reasoning: str | None = None
    actions: np.ndarray | None = None
    action_names: tuple[str, ...] = ()
    action_units: tuple[str, ...] = ()

    @property
    def times_ns(self) -> np.ndarray:
        """(N,) absolute time of each waypoint."""
        return self.t0_ns + np.round((np.arange(len(self.xyz)) + 1) * self.dt_s * 1e9).astype(np.int64)

    def in_odom(self) -> tuple[np.ndarray, np.ndarray]:
        """Waypoints with t0's pose prepended, in the odometry frame: xyz (N+1, 3), yaw (N+1,)."""
        local = np.vstack([np.zeros((1, 3)), self.xyz])
        xyz = local @ self.pose_t0_rot.T + self.pose_t0_xyz
        yaw0 = float(np.arctan2(self.pose_t0_rot[1, 0], self.pose_t0_rot[0, 0]))
        if self.rot is not None:
            local_yaw = np.concatenate([[0.0], np.arctan2(self.rot[:, 1, 0], self.rot[:, 0, 0])])
        else:
            local_yaw = _heading_from_path(local)
        return xyz, np.unwrap(yaw0 + local_yaw)


@dataclass(frozen=True)
class OdomTrajectory:
    """What the node publishes: stamped t0, points at their absolute times, in the odom frame."""

    stamp_ns: int  # t0 of the inputs it was computed from (or now, for a fallback)
    times_ns: np.ndarray  # (K,)
    xyz: np.ndarray  # (K, 3)
    yaw: np.ndarray  # (K,)
    speed: np.ndarray  # (K,) m/s
    acceleration: np.ndarray  # (K,) m/s^2
    source: str  # "policy" or "fallback"

    def __len__(self) -> int:
        return len(self.times_ns)


def _heading_from_path(xyz: np.ndarray) -> np.ndarray:
    """Yaw along a path (N, 3) from successive differences; held where the path stands still."""
    d = np.diff(xyz[:, :2], axis=0)
    moving = np.hypot(d[:, 0], d[:, 1]) > 1e-6
    yaw = np.zeros(len(xyz))
    last = 0.0
    for i, (dx, dy) in enumerate(d):
        if moving[i]:
            last = float(np.arctan2(dy, dx))
        yaw[i + 1] = last
    return yaw


def kinematics(times_s: np.ndarray, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Speed (K,), acceleration (K,) and curvature (K,) of a timed path by finite differences."""
    if len(times_s) < 2:
        z = np.zeros(len(times_s))
        return z, z.copy(), z.copy()
    speed = np.hypot(np.gradient(xyz[:, 0], times_s), np.gradient(xyz[:, 1], times_s))
    accel = np.gradient(speed, times_s)
    heading = np.unwrap(np.arctan2(np.gradient(xyz[:, 1], times_s), np.gradient(xyz[:, 0], times_s)))
    yaw_rate = np.gradient(heading, times_s)
    curvature = np.where(speed > 0.5, yaw_rate / np.maximum(speed, 1e-9), 0.0)
    return speed, accel, curvature


def retime(traj: PlannedTrajectory, now_ns: int) -> OdomTrajectory:
    """The part of `traj` still ahead of `now`, resampled at its dt starting at now, in odom.

    Points already in the past are dropped; the first point is the interpolated pose at now.
    """
    xyz, yaw = traj.in_odom()
    times = np.concatenate([[traj.t0_ns], traj.times_ns]).astype(np.int64)
    dt_ns = int(round(traj.dt_s * 1e9))
    start = max(now_ns, traj.t0_ns)
    new_times = np.arange(start, times[-1] + 1, dt_ns, dtype=np.int64)
    if len(new_times) == 0:
        new_times = np.array([times[-1]], dtype=np.int64)
    rel = (times - traj.t0_ns) / 1e9
    new_rel = (new_times - traj.t0_ns) / 1e9
    out_xyz = np.stack([np.interp(new_rel, rel, xyz[:, k]) for k in range(3)], axis=1)
    out_yaw = np.interp(new_rel, rel, yaw)
    speed_all, accel_all, _ = kinematics(rel, xyz)
    return OdomTrajectory(
        stamp_ns=traj.t0_ns,
        times_ns=new_times,
        xyz=out_xyz,
        yaw=out_yaw,
        speed=np.interp(new_rel, rel, speed_all),
        acceleration=np.interp(new_rel, rel, accel_all),
        source="policy",
    )
