"""Buffered sensor_msgs/JointState of a robot arm: the model's state vector at a stack's t0.

Each message is mapped by joint name onto `joint_names` (the model's state order; a JointState may
list the joints in any order and carry others besides). A message that lacks one of them, whose
arrays disagree in length, or that holds NaN/inf is dropped and counted, never stored: a tick
then uses the last good state or, once that is too old, does not run (the controller holds).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_ros.sensors.drops import DropCounter
from vla_ros.sensors.state_stream import StateStream, StateUnavailable

class JointStateError(StateUnavailable):
    """No usable joint state for a stack. `kind` is the skip reason."""


@dataclass(frozen=True)
class JointSample:
    """Joint positions (and velocities, when the robot reports them) at `stamp_ns`, in
    `joint_names` order; interpolated between the two messages around it."""

    stamp_ns: int
    joint_names: tuple[str, ...]
    positions: np.ndarray  # float64 (J,)
    velocities: np.ndarray | None  # float64 (J,) or None


def joints_from_message(msg: Any, joint_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """A JointState -> (positions, velocities or None) in `joint_names` order; ValueError names the problem."""
    names = [str(n) for n in msg.name]
    position = np.asarray(msg.position, dtype=np.float64).reshape(-1)
    velocity = np.asarray(msg.velocity, dtype=np.float64).reshape(-1)
    if len(position) != len(names):
        raise ValueError(f"{len(names)} joint names but {len(position)} positions")
    if len(velocity) not in (0, len(names)):
        raise ValueError(f"{len(names)} joint names but {len(velocity)} velocities")
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in joint_names if n not in index]
    if missing:
        raise KeyError(f"joints {missing} missing (message has {names})")
    order = [index[n] for n in joint_names]
    pos = position[order]
    vel = velocity[order] if len(velocity) else None
    if not np.all(np.isfinite(pos)) or (vel is not None and not np.all(np.isfinite(vel))):
        raise FloatingPointError("NaN or inf in positions or velocities")
    return pos, vel


class JointStateBuffer(StateStream):
    """The state stream of an arm; the pipeline drives it as it drives the odometry buffer."""

    def __init__(self, topic: str, joint_names: tuple[str, ...], keep_ns: int, max_age_ns: int, drops: DropCounter) -> None:
        super().__init__(topic, keep_ns, drops)
        self.joint_names = tuple(joint_names)
        self.max_age_ns = max_age_ns
        self._positions: list[np.ndarray] = []
        self._velocities: list[np.ndarray | None] = []

    def add(self, msg: Any, stamp: int) -> bool:
        """Store a state whose stamp the caller has checked to be newer than `newest_ns`."""
        try:
            pos, vel = joints_from_message(msg, self.joint_names)
        except KeyError as exc:
            self.drop("joint_missing", str(exc.args[0]))
            return False
        except FloatingPointError as exc:
            self.drop("not_finite", str(exc))
            return False
        except (ValueError, TypeError, AttributeError) as exc:
            self.drop("bad_joint_state", str(exc))
            return False
        self._stamps.append(stamp)
        self._positions.append(pos)
        self._velocities.append(vel)
        self.accepted += 1
        self._keep_window(self._positions, self._velocities)
        return True

    def reset(self) -> None:
        self._stamps.clear()
        self._positions.clear()
        self._velocities.clear()

    def newest(self) -> JointSample | None:
        if not self._stamps:
            return None
        return JointSample(self._stamps[-1], self.joint_names, self._positions[-1], self._velocities[-1])

    def state_at(self, t0_ns: int) -> JointSample:
        """The state at t0: interpolated between the messages around it, or the newest one held
        when t0 is at most `max_age_ns` past it. JointStateError otherwise."""
        if not self._stamps:
            raise JointStateError("joint_state_missing", f"no usable joint state on {self.topic}")
        i = bisect.bisect_right(self._stamps, t0_ns)
        if i == len(self._stamps):
            age = t0_ns - self._stamps[-1]
            if age > self.max_age_ns:
                raise JointStateError("joint_state_stale", f"newest joint state is {age / 1e9:.3f} s older than t0")
            return JointSample(t0_ns, self.joint_names, self._positions[-1], self._velocities[-1])
        if i == 0:
            raise JointStateError("joint_state_missing", f"no joint state at or before t0 (first is {(self._stamps[0] - t0_ns) / 1e9:.3f} s after)")
        lo, hi = i - 1, i
        frac = (t0_ns - self._stamps[lo]) / (self._stamps[hi] - self._stamps[lo])
        pos = self._positions[lo] + frac * (self._positions[hi] - self._positions[lo])
        v0, v1 = self._velocities[lo], self._velocities[hi]
        vel = None if v0 is None or v1 is None else v0 + frac * (v1 - v0)
        return JointSample(t0_ns, self.joint_names, pos, vel)
