"""What one rollout episode leaves behind for scoring and reporting (picklable: workers send it
back to the parent)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vla_ros.sim.road import Road
from vla_ros.sim.world import EGO_FIELDS, STEP_NS, VehicleSnap

METHODS = ("model", "expert", "constant_velocity")
METHOD_LABELS = {"model": "model (node core)", "expert": "expert (upper bound)", "constant_velocity": "constant velocity (lower bound)"}


@dataclass
class EpisodeLog:
    name: str  # e.g. "ep03_seed3003"
    method: str  # one of METHODS
    seed: int
    scenario: str
    road: Road
    start_ns: int  # sim time of step 0
    handover_step: int  # the step from which the method drives (the expert drives before it)
    ego: np.ndarray  # (N, len(EGO_FIELDS)): the ego at every step
    traffic: list[tuple[VehicleSnap, ...]]  # (N) the vehicles at every step
    control_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # control ticks after the handover
    fallback: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # fallback published at that tick
    latency_ms: list[float] = field(default_factory=list)  # policy time per inference (wall clock)
    terminated: str | None = None  # "collision" or "left_road": the episode stopped early
    wall_s: float = 0.0
    skipped: dict[str, int] = field(default_factory=dict)  # inference ticks without output, by reason
    files: dict[str, str] = field(default_factory=dict)  # what the episode wrote, relative to --out

    @property
    def steps(self) -> int:
        return len(self.ego)

    @property
    def dt_s(self) -> float:
        return STEP_NS / 1e9

    def field(self, name: str) -> np.ndarray:
        return self.ego[:, EGO_FIELDS.index(name)]

    def time_s(self, step: int) -> float:
        """Seconds since the handover."""
        return (step - self.handover_step) * self.dt_s
