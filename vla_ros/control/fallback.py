"""The safe fallback: a comfortable stop from the current speed along the current heading.

Deceleration ramps up linearly over `ramp_s` (bounded jerk) to `deceleration`, then holds until
standstill; after that the trajectory stays at the stopping point. It is published in the odom
frame from the latest ego state and re-planned at every control tick, so it always starts where
the vehicle is.
"""
from __future__ import annotations

import numpy as np

from vla_ros.control.trajectory import OdomTrajectory
from vla_ros.sensors.ego_buffer import EgoState


def stopping_trajectory(
    ego: EgoState, now_ns: int, deceleration: float, dt_s: float = 0.1, horizon_s: float = 6.4, ramp_s: float = 0.5
) -> OdomTrajectory:
    n = int(round(horizon_s / dt_s)) + 1
    t = np.arange(n) * dt_s
    # Integrate a(t) = -decel * min(t / ramp, 1) finely, then sample at dt.
    fine_dt = dt_s / 10
    tf = np.arange(int(round(horizon_s / fine_dt)) + 1) * fine_dt
    a = -deceleration * np.minimum(tf / ramp_s, 1.0) if ramp_s > 0 else np.full_like(tf, -deceleration)
    v = np.empty_like(tf)
    s = np.empty_like(tf)
    v[0], s[0] = max(ego.speed, 0.0), 0.0
    for i in range(1, len(tf)):
        v[i] = max(v[i - 1] + a[i - 1] * fine_dt, 0.0)
        s[i] = s[i - 1] + 0.5 * (v[i] + v[i - 1]) * fine_dt
    stopped = v <= 0.0
    a = np.where(stopped, 0.0, a)
    idx = np.round(t / fine_dt).astype(int)
    heading = np.array([np.cos(ego.yaw), np.sin(ego.yaw), 0.0])
    xyz = ego.xyz[None, :] + s[idx, None] * heading[None, :]
    return OdomTrajectory(
        stamp_ns=now_ns,
        times_ns=now_ns + np.round(t * 1e9).astype(np.int64),
        xyz=xyz,
        yaw=np.full(n, ego.yaw),
        speed=v[idx],
        acceleration=a[idx],
        source="fallback",
    )
