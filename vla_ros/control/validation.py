"""Rejecting policy outputs that must not reach the vehicle: NaN/inf, or motion beyond the
configured physical limits (acceleration, curvature)."""
from __future__ import annotations

import numpy as np

from vla_ros.control.trajectory import PlannedTrajectory, kinematics

# Finite differences of a valid integrated trajectory overshoot the true limits slightly.
_TOLERANCE = 1.05
# Curvature is only meaningful when moving; below this speed it is not checked.
_MIN_SPEED_FOR_CURVATURE = 1.0


class RejectedOutput(ValueError):
    """A policy output failed validation. `reason` is a short, countable key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def validate_trajectory(traj: PlannedTrajectory, max_abs_acceleration: float, max_abs_curvature: float) -> None:
    """Raise RejectedOutput if the trajectory is not finite or exceeds the limits."""
    arrays = {"xyz": traj.xyz, "pose_t0_xyz": traj.pose_t0_xyz, "pose_t0_rot": traj.pose_t0_rot}
    if traj.rot is not None:
        arrays["rot"] = traj.rot
    for name, arr in arrays.items():
        if not np.all(np.isfinite(arr)):
            raise RejectedOutput("not_finite", f"{name} contains NaN or inf")
    if len(traj.xyz) < 2 or not np.isfinite(traj.dt_s) or traj.dt_s <= 0:
        raise RejectedOutput("malformed", f"{len(traj.xyz)} points at dt={traj.dt_s}")
    local = np.vstack([np.zeros((1, 3)), traj.xyz])
    times = np.arange(len(local)) * traj.dt_s
    speed, accel, curvature = kinematics(times, local)
    # The first point's acceleration depends on the unknown speed at t0; skip the end effects.
    inner = slice(1, -1)
    worst_a = float(np.max(np.abs(accel[inner]))) if len(accel) > 2 else 0.0
    if worst_a > max_abs_acceleration * _TOLERANCE:
        raise RejectedOutput("acceleration_limit", f"|a| reaches {worst_a:.2f} m/s^2 > {max_abs_acceleration:g}")
    moving = speed[inner] > _MIN_SPEED_FOR_CURVATURE
    if np.any(moving):
        worst_k = float(np.max(np.abs(curvature[inner][moving])))
        if worst_k > max_abs_curvature * _TOLERANCE:
            raise RejectedOutput("curvature_limit", f"|curvature| reaches {worst_k:.3f} 1/m > {max_abs_curvature:g}")
