"""The stale-input watchdog: decides, at each control tick, whether the latest policy output may
still be followed. Ages are in the node's clock (ROS time: wall or /clock)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WatchdogState:
    ok: bool
    reasons: tuple[str, ...]  # empty when ok, e.g. ("input_stale",)
    input_age_s: float | None  # now - t0 of the newest complete stack
    output_age_s: float | None  # now - arrival of the newest accepted policy output


class Watchdog:
    def __init__(self, max_input_age_s: float, max_output_age_s: float, time_jump_s: float = 1.0) -> None:
        self.max_input_age_ns = round(max_input_age_s * 1e9)
        self.max_output_age_ns = round(max_output_age_s * 1e9)
        self.time_jump_ns = round(time_jump_s * 1e9)
        self._input_t0_ns: int | None = None
        self._output_ns: int | None = None

    def note_input(self, t0_ns: int) -> None:
        """A complete frame stack with this t0 was assembled."""
        if self._input_t0_ns is not None and t0_ns < self._input_t0_ns - self.time_jump_ns:
            self.reset()
        if self._input_t0_ns is None or t0_ns > self._input_t0_ns:
            self._input_t0_ns = t0_ns

    def note_output(self, arrival_ns: int) -> None:
        """A policy output was accepted at this time."""
        if self._output_ns is not None and arrival_ns < self._output_ns - self.time_jump_ns:
            self._output_ns = None
        if self._output_ns is None or arrival_ns > self._output_ns:
            self._output_ns = arrival_ns

    def reset(self) -> None:
        """Forget everything (the clock jumped backwards: a looped bag, a simulator reset)."""
        self._input_t0_ns = None
        self._output_ns = None

    def check(self, now_ns: int) -> WatchdogState:
        latest = max(v for v in (self._input_t0_ns, self._output_ns, -1) if v is not None)
        if latest > now_ns + self.max_input_age_ns:  # the clock went backwards
            self.reset()
        reasons = []
        input_age = None if self._input_t0_ns is None else (now_ns - self._input_t0_ns) / 1e9
        output_age = None if self._output_ns is None else (now_ns - self._output_ns) / 1e9
        if input_age is None:
            reasons.append("no_input")
        elif now_ns - self._input_t0_ns > self.max_input_age_ns:  # type: ignore[operator]
            reasons.append("input_stale")
        if output_age is None:
            reasons.append("no_output")
        elif now_ns - self._output_ns > self.max_output_age_ns:  # type: ignore[operator]
            reasons.append("output_stale")
        return WatchdogState(not reasons, tuple(reasons), input_age, output_age)
