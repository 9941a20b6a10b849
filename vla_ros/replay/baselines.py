"""Kinematic baselines that any learned policy must beat, estimated from the same ego history
the policy sees (so they are evaluated on exactly the same ticks with exactly the same inputs).

- constant velocity (CV): keep the speed and the heading at t0; a straight line.
- constant velocity + yaw rate (CTRV): keep speed and yaw rate; a circular arc.

Speed and yaw rate are estimated over the last `window` history intervals in a way that is exact
on a constant arc: the yaw rate from the orientation change, the speed from chord lengths
corrected to arc lengths (chord = 2 r sin(dpsi / 2)). Predictions are planar (z = 0), like the
errors computed from them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_ros.sensors.ego_buffer import EgoHistory

BASELINES = ("constant_velocity", "constant_velocity_yaw_rate")


@dataclass(frozen=True)
class MotionEstimate:
    speed: float  # m/s, negative when reversing
    yaw_rate: float  # rad/s, left positive
    yaw0: float  # heading at t0 in the t0 frame (0 up to interpolation noise)


def _yaw(rot: np.ndarray) -> np.ndarray:
    """(N, 3, 3) -> (N,) unwrapped yaw of each x axis."""
    return np.unwrap(np.arctan2(rot[:, 1, 0], rot[:, 0, 0]))


def estimate_motion(history: EgoHistory, window: int = 5) -> MotionEstimate:
    """Speed and yaw rate over the last `window` intervals of the history (t0 frame)."""
    xyz, rot, times = history.xyz, history.rot, history.times_s
    w = int(min(max(window, 1), len(times) - 1))
    yaw = _yaw(rot[-(w + 1) :])
    p = xyz[-(w + 1) :, :2]
    t = times[-(w + 1) :]
    span = float(t[-1] - t[0])
    if span <= 0:
        return MotionEstimate(0.0, 0.0, float(yaw[-1]))
    step = np.diff(p, axis=0)  # (w, 2)
    chord = np.linalg.norm(step, axis=1)
    half = np.diff(yaw) / 2.0
    # arc / chord = (dpsi/2) / sin(dpsi/2); np.sinc(x) = sin(pi x) / (pi x)
    arc = chord / np.sinc(half / np.pi)
    mid = yaw[:-1] + half
    along = step[:, 0] * np.cos(mid) + step[:, 1] * np.sin(mid)
    speed = float(np.sum(np.where(along < 0, -arc, arc)) / span)
    yaw_rate = float((yaw[-1] - yaw[0]) / span)
    return MotionEstimate(speed, yaw_rate, float(yaw[-1]))


def constant_velocity(est: MotionEstimate, times_s: np.ndarray) -> np.ndarray:
    """(T,) seconds after t0 -> (T, 3) straight-line positions in the t0 frame."""
    d = est.speed * np.asarray(times_s, dtype=np.float64)
    return np.stack([d * np.cos(est.yaw0), d * np.sin(est.yaw0), np.zeros_like(d)], axis=1)


def constant_velocity_yaw_rate(est: MotionEstimate, times_s: np.ndarray) -> np.ndarray:
    """(T,) seconds after t0 -> (T, 3) positions on the arc of constant speed and yaw rate."""
    t = np.asarray(times_s, dtype=np.float64)
    if abs(est.yaw_rate) < 1e-6:  # the arc formula divides by the yaw rate
        return constant_velocity(est, t)
    r = est.speed / est.yaw_rate
    yaw = est.yaw0 + est.yaw_rate * t
    x = r * (np.sin(yaw) - np.sin(est.yaw0))
    y = r * (np.cos(est.yaw0) - np.cos(yaw))
    return np.stack([x, y, np.zeros_like(t)], axis=1)


def baseline_predictions(history: EgoHistory, times_s: np.ndarray, window: int = 5) -> dict[str, np.ndarray]:
    """Both baselines at `times_s` after t0: name -> (T, 3) in the t0 ego frame."""
    est = estimate_motion(history, window)
    return {
        "constant_velocity": constant_velocity(est, times_s),
        "constant_velocity_yaw_rate": constant_velocity_yaw_rate(est, times_s),
    }
