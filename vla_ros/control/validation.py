"""Rejecting policy outputs that must not reach the vehicle: NaN/inf, or motion beyond the
configured physical limits (acceleration, curvature).

A family that declares its physical actions by name (kv_expert: `acceleration` in m/s^2 and
`curvature` in 1/m, the unicycle action space) has those actions checked against the limits
directly, at every step. Only a limit whose quantity the family does not name is re-derived from
the waypoints by finite differences.
"""
from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class _Bound:
    action: str  # the action name a checkpoint declares
    unit: str  # the unit the limit is configured in
    reason: str  # the rejection key (diagnostics count rejected/<reason>)


_ACCELERATION = _Bound("acceleration", "m/s^2", "acceleration_limit")
_CURVATURE = _Bound("curvature", "1/m", "curvature_limit")


def validate_trajectory(traj: PlannedTrajectory, max_abs_acceleration: float, max_abs_curvature: float) -> None:
    """Raise RejectedOutput if the trajectory (or its actions) is not finite or exceeds the limits."""
    arrays = {"xyz": traj.xyz, "pose_t0_xyz": traj.pose_t0_xyz, "pose_t0_rot": traj.pose_t0_rot}
    if traj.rot is not None:
        arrays["rot"] = traj.rot
    if traj.actions is not None:
        arrays["actions"] = traj.actions
    for name, arr in arrays.items():
        if not np.all(np.isfinite(arr)):
            raise RejectedOutput("not_finite", f"{name} contains NaN or inf")
    if len(traj.xyz) < 2 or not np.isfinite(traj.dt_s) or traj.dt_s <= 0:
        raise RejectedOutput("malformed", f"{len(traj.xyz)} points at dt={traj.dt_s}")
    named = _named_actions(traj)
    limits = {_ACCELERATION: max_abs_acceleration, _CURVATURE: max_abs_curvature}
    derived = [b for b in limits if b.action not in named]
    if _ACCELERATION.action in named:
        _check_steps(named[_ACCELERATION.action], max_abs_acceleration, _ACCELERATION, np.ones(len(traj.xyz), bool))
    if derived:  # limits the actions do not name: from the waypoints
        _check_finite_differences(traj, limits, derived)
    if _CURVATURE.action in named:
        # the mean speed over step i: the segment ending at waypoint i over dt
        local = np.vstack([np.zeros((1, 3)), traj.xyz])
        step_speed = np.hypot(*np.diff(local[:, :2], axis=0).T) / traj.dt_s
        _check_steps(named[_CURVATURE.action], max_abs_curvature, _CURVATURE, step_speed > _MIN_SPEED_FOR_CURVATURE)


def _named_actions(traj: PlannedTrajectory) -> dict[str, np.ndarray]:
    """The bounded quantities the trajectory's actions name -> their values per step (N,)."""
    if traj.actions is None or not traj.action_names:
        return {}
    actions = np.asarray(traj.actions)
    names, units = tuple(traj.action_names), tuple(traj.action_units)
    if actions.ndim != 2 or actions.shape != (len(traj.xyz), len(names)) or len(units) != len(names):
        raise RejectedOutput("malformed", f"actions of shape {actions.shape} with {len(names)} names and {len(units)} "
                                          f"units for {len(traj.xyz)} waypoints")
    named = {}
    for bound in (_ACCELERATION, _CURVATURE):
        if bound.action in names:
            i = names.index(bound.action)
            if units[i] != bound.unit:  # a limit in other units would be meaningless: refuse, never guess
                raise RejectedOutput("malformed", f"action '{bound.action}' is in '{units[i]}'; its limit is in '{bound.unit}'")
            named[bound.action] = actions[:, i]
    return named


def _check_steps(values: np.ndarray, limit: float, bound: _Bound, checked: np.ndarray) -> None:
    """The model's own actions: every checked step within +-limit (no tolerance: nothing is derived)."""
    over = checked & (np.abs(values) > limit)
    if np.any(over):
        i = int(np.argmax(np.where(over, np.abs(values), -np.inf)))
        raise RejectedOutput(bound.reason, f"{bound.action} action {values[i]:.3g} {bound.unit} at step {i} "
                                           f"beyond +-{limit:g}")


def _check_finite_differences(traj: PlannedTrajectory, limits: dict[_Bound, float], bounds: list[_Bound]) -> None:
    """The limits in `bounds` (those the actions do not name), re-derived from the waypoints."""
    local = np.vstack([np.zeros((1, 3)), traj.xyz])
    times = np.arange(len(local)) * traj.dt_s
    speed, accel, curvature = kinematics(times, local)
    # The first point's acceleration depends on the unknown speed at t0; skip the end effects.
    inner = slice(1, -1)
    if _ACCELERATION in bounds:
        worst_a = float(np.max(np.abs(accel[inner]))) if len(accel) > 2 else 0.0
        if worst_a > limits[_ACCELERATION] * _TOLERANCE:
            raise RejectedOutput("acceleration_limit", f"|a| reaches {worst_a:.2f} m/s^2 > {limits[_ACCELERATION]:g}")
    moving = speed[inner] > _MIN_SPEED_FOR_CURVATURE
    if _CURVATURE in bounds and np.any(moving):
        worst_k = float(np.max(np.abs(curvature[inner][moving])))
        if worst_k > limits[_CURVATURE] * _TOLERANCE:
            raise RejectedOutput("curvature_limit", f"|curvature| reaches {worst_k:.3f} 1/m > {limits[_CURVATURE]:g}")
