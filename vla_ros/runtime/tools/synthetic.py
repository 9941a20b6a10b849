"""Deterministic synthetic ticks for tests and benchmarks (no sensors needed).

Frame k of camera c is always the same image (seeded by (seed, c, k)) with stamp k * 100 ms, so
consecutive ticks share frames exactly like a real camera stream does.
"""
from __future__ import annotations

import functools

import numpy as np

from vla_ros.runtime.inputs import PolicyInputs

FRAME_PERIOD_NS = 100_000_000


@functools.lru_cache(maxsize=128)  # consecutive ticks share frames; do not mutate the result
def synthetic_frame(seed: int, camera: int, index: int, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8: smooth gradients plus noise, different for every (camera, index)."""
    rng = np.random.default_rng([seed, camera, index])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width, yy / height, 0.5 + 0.5 * np.sin((xx + yy + 7 * index) / 23.0)], -1) * 200
    return np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


def synthetic_inputs(tick: int = 0, *, cameras: int = 4, frames: int = 4, height: int = 320, width: int = 576,
                     speed: float = 8.0, yaw_rate: float = 0.0, history_steps: int = 16, dt: float = 0.1,
                     seed: int = 0) -> PolicyInputs:
    """Tick `tick` uses frames tick .. tick+frames-1 of each camera; ego history of a constant
    speed/yaw-rate motion ending at the origin of the t0 frame, heading +x."""
    idx = [tick + f for f in range(frames)]
    images = np.stack([np.stack([synthetic_frame(seed, c, k, height, width) for k in idx]) for c in range(cameras)])
    stamps = np.array([[k * FRAME_PERIOD_NS for k in idx] for _ in range(cameras)], dtype=np.int64)
    # Integrate backwards from t0 (pose at the origin, yaw 0).
    t = (np.arange(history_steps) - (history_steps - 1)) * dt
    yaw = yaw_rate * t
    if abs(yaw_rate) < 1e-9:
        x, y = speed * t, np.zeros_like(t)
    else:
        x, y = speed / yaw_rate * np.sin(yaw), speed / yaw_rate * (1 - np.cos(yaw))
    xyz = np.stack([x, y, np.zeros_like(t)], -1)
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.zeros((history_steps, 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1.0
    names = tuple(f"cam{c}" for c in range(cameras))
    # camera_ids 0..V-1: for models whose prompt names the cameras (Alpamayo 1.5), ignored by the others
    return PolicyInputs(images=images, history_xyz=xyz, history_rot=rot, camera_names=names, stamps_ns=stamps,
                        t0_ns=int(stamps[0, -1]), camera_ids=tuple(range(cameras)))


def synthetic_robot_inputs(tick: int = 0, *, cameras: int, height: int, width: int, state_dim: int,
                           task: str = "pick up the red cube", seed: int = 0) -> PolicyInputs:
    """A robot-arm tick (families fed a state and an instruction, e.g. pi0 / pi0.5): frame `tick`
    of each camera (one frame per camera), a smooth state in [-0.5, 0.5] that moves with the tick,
    and `task`."""
    images = np.stack([synthetic_frame(seed, c, tick, height, width)[None] for c in range(cameras)])
    stamps = np.full((cameras, 1), tick * FRAME_PERIOD_NS, dtype=np.int64)
    state = (0.5 * np.sin(np.arange(state_dim) + 0.3 * tick)).astype(np.float32)
    return PolicyInputs(images=images, camera_names=tuple(f"cam{c}" for c in range(cameras)), stamps_ns=stamps,
                        t0_ns=tick * FRAME_PERIOD_NS, state=state, task=task)
