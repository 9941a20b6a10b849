"""The flow-matching time grid: where each Euler step evaluates the velocity, and its step size.

The grid and direction come from the model config; the per-step times are computed once
(`FlowSchedule`) so that time-only network terms can be precomputed per step. The Euler loop
itself is the runtime's (`x += dt * v` per step, in each backend).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from vla_ros.model.config import FlowConfig


@dataclass(frozen=True)
class FlowSchedule:
    """times[i] is where step i evaluates the velocity; dts[i] = times[i+1] - times[i] (signed)."""

    times: tuple[float, ...]  # (steps,)
    dts: tuple[float, ...]  # (steps,)

    @property
    def steps(self) -> int:
        return len(self.times)


def flow_schedule(cfg: FlowConfig, steps: int | None = None) -> FlowSchedule:
    n = int(steps if steps is not None else cfg.steps)
    if n < 1:
        raise ValueError(f"flow steps must be >= 1, got {n}")
    if cfg.grid == "uniform":
        grid = [i / n for i in range(n + 1)]
    else:  # cosine: finer steps near both ends
        grid = [(1.0 - math.cos(math.pi * i / n)) / 2.0 for i in range(n + 1)]
    if cfg.direction == "data_to_noise":  # openpi: noise at t=1, integrate towards t=0
        grid = [1.0 - g for g in grid]
    return FlowSchedule(times=tuple(grid[:-1]), dts=tuple(grid[i + 1] - grid[i] for i in range(n)))
