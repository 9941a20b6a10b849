"""The vehicle controller of a rollout: follows the latest published trajectory (a nav_msgs/Path
in odom, each pose stamped with the time it should be reached), as a car's low-level controller
would.

Longitudinal: acceleration = the path's own acceleration at now + PREVIEW_S, plus K_SPEED x the
speed error to the path's speed there, plus K_POSITION x the along-track error to where the path
says the car should be now; clipped to [-MAX_DECEL, MAX_ACCEL]. Lateral: pure pursuit on the path
at a look-ahead of LOOKAHEAD_S x speed (clamped to [LOOKAHEAD_MIN_M, LOOKAHEAD_MAX_M]) from the
point of the path nearest the car; past its end the path continues straight along its last
heading. The commands go through the world's vehicle model (`sim.ego.step_bicycle`), which
bounds the steering angle (0.6 rad) and its rate (0.7 rad/s) and the jerk (4 m/s^3 up, 12 down):
the same actuators the expert drives with.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_ros.sim.ego import WHEELBASE, EgoState

PREVIEW_S = 0.3
K_SPEED = 1.5  # 1/s
K_POSITION = 1.0  # 1/s^2
MAX_ACCEL = 2.0  # m/s^2
MAX_DECEL = 6.0  # m/s^2
LOOKAHEAD_S = 1.0
LOOKAHEAD_MIN_M = 5.0
LOOKAHEAD_MAX_M = 25.0
HOLD_DECEL = 2.0  # m/s^2 before any path has arrived


@dataclass(frozen=True)
class TimedPath:
    """A trajectory to follow: times (K,) in ns, positions (K, 2) and yaw (K,) in odom."""

    times_ns: np.ndarray
    xy: np.ndarray
    yaw: np.ndarray

    @classmethod
    def from_path_message(cls, msg: Any) -> "TimedPath":
        """nav_msgs/Path (rosbags type-store object) -> TimedPath."""
        poses = msg.poses
        times = np.array([p.header.stamp.sec * 1_000_000_000 + p.header.stamp.nanosec for p in poses], dtype=np.int64)
        xy = np.array([(p.pose.position.x, p.pose.position.y) for p in poses], dtype=np.float64).reshape(-1, 2)
        q = [(p.pose.orientation.z, p.pose.orientation.w) for p in poses]
        yaw = np.array([2.0 * math.atan2(z, w) for z, w in q], dtype=np.float64)
        return cls(times, xy, yaw)

    def __len__(self) -> int:
        return len(self.times_ns)


class PathFollower:
    def __init__(self) -> None:
        self.path: TimedPath | None = None
        self._speed: np.ndarray | None = None
        self._accel: np.ndarray | None = None
        self._t_s: np.ndarray | None = None

    def set_path(self, path: TimedPath) -> None:
        if len(path) == 0:
            return
        self.path = path
        t = (path.times_ns - path.times_ns[0]) / 1e9
        self._t_s = t
        if len(path) >= 2 and t[-1] > 0:
            step = np.hypot(*np.diff(path.xy, axis=0).T)
            dt = np.maximum(np.diff(t), 1e-6)
            seg_v = step / dt
            speed = np.concatenate([[seg_v[0]], 0.5 * (seg_v[1:] + seg_v[:-1]), [seg_v[-1]]])
            accel = np.gradient(speed, t) if len(t) >= 2 else np.zeros_like(speed)
        else:
            speed = np.zeros(len(path))
            accel = np.zeros(len(path))
        self._speed, self._accel = speed, accel

    def command(self, ego: EgoState, now_ns: int) -> tuple[float, float]:
        """(acceleration command m/s^2, steering command rad) for the vehicle model."""
        path = self.path
        if path is None:
            return -HOLD_DECEL, 0.0
        t_rel = (now_ns - path.times_ns[0]) / 1e9
        t = self._t_s
        v_ref = float(np.interp(t_rel + PREVIEW_S, t, self._speed))
        a_ref = float(np.interp(t_rel + PREVIEW_S, t, self._accel))
        px = float(np.interp(t_rel, t, path.xy[:, 0]))
        py = float(np.interp(t_rel, t, path.xy[:, 1]))
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        along = (px - ego.x) * c + (py - ego.y) * s
        accel = a_ref + K_SPEED * (v_ref - ego.v) + K_POSITION * along
        if v_ref < 0.05 and ego.v < 0.5:
            accel = min(accel, -HOLD_DECEL)  # the path stands still: hold the brake
        accel = min(max(accel, -MAX_DECEL), MAX_ACCEL)
        return accel, self._steer(ego)

    def _steer(self, ego: EgoState) -> float:
        path = self.path
        assert path is not None
        xy = path.xy
        d2 = (xy[:, 0] - ego.x) ** 2 + (xy[:, 1] - ego.y) ** 2
        i = int(np.argmin(d2))
        look = min(max(LOOKAHEAD_S * ego.v, LOOKAHEAD_MIN_M), LOOKAHEAD_MAX_M)
        seg = np.hypot(*np.diff(xy[i:], axis=0).T) if len(xy) - i >= 2 else np.zeros(0)
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        if cum[-1] >= look:
            j = int(np.searchsorted(cum, look))
            a = (look - cum[j - 1]) / max(cum[j] - cum[j - 1], 1e-9)
            tx, ty = xy[i + j - 1] + a * (xy[i + j] - xy[i + j - 1])
        else:  # past the end: straight on along the last heading
            rest = look - cum[-1]
            tx = xy[-1, 0] + rest * math.cos(path.yaw[-1])
            ty = xy[-1, 1] + rest * math.sin(path.yaw[-1])
        dx, dy = tx - ego.x, ty - ego.y
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        lx, ly = c * dx + s * dy, -s * dx + c * dy
        dist2 = max(lx * lx + ly * ly, 1.0)
        return math.atan(WHEELBASE * 2.0 * ly / dist2)
