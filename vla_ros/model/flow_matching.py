"""Flow-matching sampler: Euler integration of a predicted velocity over a configured time grid.

The grid and direction come from the model config; the per-step times are computed once
(`FlowSchedule`) so that time-only network terms can be precomputed per step.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

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


def euler_sample(velocity: Callable[[torch.Tensor, int], torch.Tensor], noise: torch.Tensor, schedule: FlowSchedule) -> torch.Tensor:
    """x = noise; for each step i: x += dts[i] * velocity(x, i). velocity gets the step index so
    callers can look up precomputed time terms. noise (B, T, A) -> (B, T, A)."""
    x = noise
    for i, dt in enumerate(schedule.dts):
        x = x + dt * velocity(x, i)
    return x
