"""Runs inference as soon as a new complete set of camera frames is in, at most `rate_hz` (the
inputs' rate: up to 1.11x that in wall time when camera stamps jitter by 10% of a period).

Starting on data rather than on a free-running timer removes up to one camera period of waiting
from the input-to-output latency: the newest frame's t0 is as fresh as it can be when the
policy starts. The rate limit applies to the inputs, not to the start times: a set is used when
its t0 is at least one period (less 10% for camera timing jitter) after the t0 of the last set
used. (Limiting start times instead would make any one late start permanent: every later start
would wait for the late one's period to expire.) When a run ends after the newest set came (it
came during the run), the trigger waits for the next set (at most one more period) instead of
starting on stale data; runs then stay in step with the cameras, which is also what lets the
control timer lock its phase to them. Frames that arrive while an inference runs are not
queued; the next run takes the newest set, and the sets passed over are counted.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from vla_ros.ros.clock import Clock

# A frame set this recent (since its last camera arrived) is fresh enough to start on.
FRESH_NS = 20_000_000


class InferenceTrigger:
    def __init__(self, clock: Clock, rate_hz: float, ready_t0: Callable[[], int | None], run: Callable[[int], None],
                 due: Callable[[int], bool] | None = None) -> None:
        """`ready_t0()` gives the t0 a stack would have now (None: not every stream yet);
        `run(now_ns)` assembles and runs one inference; `due(now_ns)`, when given, must also be
        true (an arm starts the next chunk only when the current one is about to run out)."""
        self.due = due
        self.clock = clock
        self.min_period_ns = round(1e9 / rate_hz)
        self.ready_t0 = ready_t0
        self.run = run
        self.runs = 0
        self.passed_over = 0  # new t0s that came and went while an inference was running
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_t0: int | None = None
        self._last_start: int | None = None
        self._count_lock = threading.Lock()
        self._announced: int | None = None
        self._announced_at = 0  # clock time at which the newest t0 became complete
        self._pending = 0  # distinct t0s announced since the last run started

    def notify(self) -> None:
        """New input arrived (called from subscription callbacks; cheap)."""
        t0 = self.ready_t0()
        if t0 is not None:
            with self._count_lock:
                if t0 != self._announced:
                    self._announced = t0
                    self._announced_at = self.clock.now_ns()
                    self._pending += 1
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="vla_ros-inference", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.05)
            self._wake.clear()
            t0 = self.ready_t0()
            if t0 is None or t0 == self._last_t0:
                continue
            if self._last_t0 is not None and t0 < self._last_t0:
                self._last_t0 = self._last_start = None  # stamps went backwards (a loop, a reset): start over
            if self._last_t0 is not None and t0 - self._last_t0 < self.min_period_ns - self.min_period_ns // 10:
                continue  # within one period of the last input used: wait for a newer set
            now = self.clock.now_ns()
            if self.due is not None and not self.due(now):
                continue  # not needed yet; the caller notifies when it is
            with self._count_lock:
                stale = t0 == self._announced and now - self._announced_at > FRESH_NS
            if stale and self._last_start is not None and now - self._last_start < 2 * self.min_period_ns:
                continue  # the next set is due within a period: start on it, not on this one
            with self._count_lock:  # every new t0 announced since the last run but this one
                self.passed_over += max(self._pending - 1, 0)
                self._pending = 0
            self._last_t0 = t0
            self._last_start = now
            self.runs += 1
            self.run(now)
