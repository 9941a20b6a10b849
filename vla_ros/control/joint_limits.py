"""Joint limits of a robot arm (position, velocity, acceleration), checked on every action chunk
and on every command before it is published. Arrays are in `arm.joint_names` order."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_ros.config import ArmConfig
from vla_ros.control.validation import RejectedOutput

# Finite differences of a smooth motion that respects a limit can overshoot it slightly
# (sampling, float32 model outputs): velocities and accelerations get this much slack.
LIMIT_TOLERANCE = 1.05
# Positions are compared exactly, up to rounding.
_POSITION_EPS = 1e-9


@dataclass(frozen=True)
class JointLimits:
    joint_names: tuple[str, ...]
    position_min: np.ndarray | None  # (J,) or None: no position limit
    position_max: np.ndarray | None
    max_velocity: np.ndarray  # (J,) > 0
    max_acceleration: np.ndarray  # (J,) > 0

    @classmethod
    def from_config(cls, arm: ArmConfig) -> "JointLimits":
        joints = len(arm.joint_names)

        def get(name: str) -> np.ndarray | None:
            values = arm.limits.per_joint(name, joints)
            return None if values is None else np.asarray(values, dtype=np.float64)

        vel, acc = get("max_velocity"), get("max_acceleration")
        assert vel is not None and acc is not None  # validated: always set
        return cls(tuple(arm.joint_names), get("position_min"), get("position_max"), vel, acc)

    # -- one violation, described (None: within limits) ------------------------------------

    def position_violation(self, positions: np.ndarray) -> str | None:
        """positions (..., J): the first joint outside [min, max], described."""
        if self.position_min is None or self.position_max is None:
            return None
        below = positions < self.position_min - _POSITION_EPS
        above = positions > self.position_max + _POSITION_EPS
        bad = below | above
        if not np.any(bad):
            return None
        where = np.argwhere(bad)[0]
        j = int(where[-1])
        value = float(positions[tuple(where)])
        return (f"{self._where(where)}joint '{self.joint_names[j]}' at {value:.4f} outside "
                f"[{self.position_min[j]:g}, {self.position_max[j]:g}]")

    def velocity_violation(self, velocities: np.ndarray) -> str | None:
        return self._rate_violation(velocities, self.max_velocity, "|v|", "/s")

    def acceleration_violation(self, accelerations: np.ndarray) -> str | None:
        return self._rate_violation(accelerations, self.max_acceleration, "|a|", "/s^2")

    def _rate_violation(self, values: np.ndarray, limit: np.ndarray, label: str, unit: str) -> str | None:
        excess = np.abs(values) / (limit * LIMIT_TOLERANCE)
        if values.size == 0 or not np.any(excess > 1.0):
            return None
        where = np.unravel_index(int(np.argmax(excess)), excess.shape)
        j = int(where[-1])
        return (f"{self._where(where)}joint '{self.joint_names[j]}' {label} {abs(float(values[where])):.3f}{unit} "
                f"> {limit[j]:g}{unit}")

    @staticmethod
    def _where(index: tuple) -> str:
        return f"action {int(index[0])}: " if len(index) > 1 else ""

    # -- whole chunks -------------------------------------------------------------------------

    def check_chunk(self, positions: np.ndarray, dt_s: float) -> None:
        """positions (T, J) at spacing dt_s: raise RejectedOutput on a position, velocity
        (first difference / dt) or acceleration (second difference / dt^2) beyond the limits."""
        problem = self.position_violation(positions)
        if problem:
            raise RejectedOutput("position_limit", problem)
        velocity = np.diff(positions, axis=0) / dt_s
        problem = self.velocity_violation(velocity)
        if problem:
            raise RejectedOutput("velocity_limit", problem)
        problem = self.acceleration_violation(np.diff(velocity, axis=0) / dt_s)
        if problem:
            raise RejectedOutput("acceleration_limit", problem)
