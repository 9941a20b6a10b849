"""What a policy gives: the PolicyOutput of `act` and its typed timings."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np


class NonFiniteOutputError(RuntimeError):
    """The policy produced NaN or inf; the output is never returned."""


@dataclass
class Timings:
    """Milliseconds per stage of one tick (None: the stage did not run)."""

    vision_ms: float | None = None  # images not in the vision cache, encoded
    prefill_ms: float | None = None  # the prefix into the K/V cache
    reasoning_ms: float | None = None  # text decoded on the cache
    reasoning_tokens: int | None = None
    denoise_ms: float | None = None  # all flow steps, all samples
    decode_ms: float | None = None  # actions -> physical units / trajectory
    total_ms: float | None = None  # the whole `act` call

    def as_dict(self) -> dict[str, float]:
        """The stages that ran, by field name (float values), e.g. for a latency message."""
        return {f.name: float(v) for f in dataclasses.fields(self) if (v := getattr(self, f.name)) is not None}


@dataclass
class PolicyOutput:
    """One tick's result for S samples of T actions, stamped t0.

    A family that drives a path gives a trajectory in the t0 ego frame (x forward, y left, z up):
    xyz (S, T, 3) and rot (S, T, 3, 3) float64, waypoints dt apart, the first at t0 + dt. A family
    that outputs an action chunk leaves both None. Always: actions (S, T, A) float64 in physical
    units, named by `action_names` / `action_units` (from the checkpoint), and raw_actions
    (S, T, A), the model's own (normalized) output the physical ones decode from.
    """

    actions: np.ndarray
    raw_actions: np.ndarray
    action_names: tuple[str, ...]
    action_units: tuple[str, ...]
    t0_ns: int | None
    dt: float
    xyz: np.ndarray | None = None
    rot: np.ndarray | None = None
    reasoning: str | None = None
    timings: Timings = field(default_factory=Timings)
    vision_encoded: int = 0
    vision_reused: int = 0
    # Instruction tokens beyond the model's token budget, cut off (the node counts and warns).
    prompt_tokens_dropped: int = 0

    @property
    def is_trajectory(self) -> bool:
        return self.xyz is not None
