"""Control-rate output: the latest valid policy trajectory re-timed to now, or the safe fallback.

Interface shared by the control modes (the node calls only these):
- `accept(output, now_ns)`: a new policy output (raises RejectedOutput, counted, if invalid);
- `note_input(t0_ns)`: a complete frame stack was assembled;
- `note_ego(state)`: the latest odometry;
- `step(now_ns) -> ControlStep`: what to publish at this control tick.
The action-chunk mode for robot arms (chunk_controller.ChunkController) implements the same calls,
with note_state (joint states) for note_ego: `accept` takes a chunk of joint targets stamped at
t0, `step` returns the command due now, holding position as its safe state (docs/arm.md).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from vla_ros.config import Config
from vla_ros.control.fallback import stopping_trajectory
from vla_ros.control.trajectory import OdomTrajectory, PlannedTrajectory, retime
from vla_ros.control.validation import RejectedOutput, validate_trajectory
from vla_ros.control.watchdog import Watchdog, WatchdogState
from vla_ros.sensors.ego_buffer import EgoState

_LOG = logging.getLogger("vla_ros.control")


@dataclass(frozen=True)
class ControlStep:
    command: OdomTrajectory | None  # None only when no ego state is known yet for a fallback
    fallback_active: bool
    watchdog: WatchdogState
    reasons: tuple[str, ...]


@dataclass
class ControlStats:
    accepted: int = 0
    superseded: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    fallback_activations: int = 0
    steps: int = 0
    fallback_steps: int = 0


class TrajectoryController:
    def __init__(self, config: Config) -> None:
        self.safety = config.safety
        self.watchdog = Watchdog(config.safety.max_input_age_s, config.safety.max_output_age_s, config.sensing.time_jump_s)
        self._time_jump_ns = round(config.sensing.time_jump_s * 1e9)
        self.stats = ControlStats()
        self._latest: PlannedTrajectory | None = None
        self._ego: EgoState | None = None
        self._in_fallback = False

    def accept(self, output: PlannedTrajectory, now_ns: int) -> None:
        try:
            validate_trajectory(output, self.safety.max_abs_acceleration, self.safety.max_abs_curvature)
        except RejectedOutput as exc:
            self.stats.rejected[exc.reason] = self.stats.rejected.get(exc.reason, 0) + 1
            _LOG.warning("policy output for t0=%.3f rejected: %s", output.t0_ns / 1e9, exc)
            raise
        if self._latest is not None and output.t0_ns <= self._latest.t0_ns:
            if self._latest.t0_ns - output.t0_ns < self._time_jump_ns:
                self.stats.superseded += 1
                return  # an older result finishing late never replaces a newer one
            # else time went backwards (looped bag, simulator reset): the new output wins
        self._latest = output
        self.stats.accepted += 1
        self.watchdog.note_output(now_ns)

    def note_input(self, t0_ns: int) -> None:
        self.watchdog.note_input(t0_ns)

    def note_ego(self, state: EgoState) -> None:
        self._ego = state

    @property
    def ego(self) -> EgoState | None:
        """The latest ego state (the fallback starts there)."""
        return self._ego

    @property
    def latest(self) -> PlannedTrajectory | None:
        """The trajectory being followed (the newest accepted one)."""
        return self._latest

    @property
    def fallback_active(self) -> bool:
        return self._in_fallback

    def step(self, now_ns: int) -> ControlStep:
        self.stats.steps += 1
        state = self.watchdog.check(now_ns)
        reasons = list(state.reasons)
        command: OdomTrajectory | None = None
        if state.ok and self._latest is not None:
            command = retime(self._latest, now_ns)
            if len(command) < 2:
                reasons.append("output_expired")
                command = None
        fallback = command is None
        if fallback:
            self.stats.fallback_steps += 1
            if self._ego is not None:
                command = stopping_trajectory(self._ego, now_ns, self.safety.fallback_deceleration)
        if fallback and not self._in_fallback:
            self.stats.fallback_activations += 1
            _LOG.warning("safe fallback engaged (%s): publishing a stopping trajectory", ", ".join(reasons))
        elif not fallback and self._in_fallback:
            _LOG.info("inputs recovered: following the policy again")
        self._in_fallback = fallback
        return ControlStep(command, fallback, state, tuple(reasons))
