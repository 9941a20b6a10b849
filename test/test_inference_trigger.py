"""The node's inference trigger on a simulated clock: when it starts, and what it passes over."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from vla_ros.ros.clock import SimClock
from vla_ros.ros.inference_trigger import InferenceTrigger

MS = 1_000_000


class Inputs:
    """Frame sets arriving at chosen clock times; records the runs the trigger starts."""

    def __init__(self) -> None:
        self.clock = SimClock()
        self.t0: int | None = None
        self.runs: list[tuple[int, int]] = []  # (clock time at start, t0 used)
        self.ran = threading.Event()
        self.trigger = InferenceTrigger(self.clock, 10.0, lambda: self.t0, self._run)

    def _run(self, now_ns: int) -> None:
        self.runs.append((now_ns, self.t0))
        self.ran.set()

    @contextmanager
    def running(self) -> Iterator["Inputs"]:
        self.clock.set(1)
        self.trigger.start()
        try:
            yield self
        finally:
            self.trigger.stop()

    def arrive(self, at_ms: float, t0_ms: float) -> bool:
        """Set the clock, announce a set stamped t0; True if a run started on it."""
        self.ran.clear()
        self.clock.set(round(at_ms * MS))
        self.t0 = round(t0_ms * MS)
        self.trigger.notify()
        started = self.ran.wait(0.5)
        return started and self.runs[-1][1] == self.t0


def test_a_late_start_does_not_delay_the_next_runs() -> None:
    with Inputs().running() as inputs:
        assert inputs.arrive(0.001, 0)
        assert inputs.arrive(115, 100)  # this set came 15 ms late
        # The next set is on time and 85 ms after the late start: it starts at once (limiting
        # start times would hold it until 215 ms, and every later run 15 ms late).
        assert inputs.arrive(200, 200)
        assert inputs.runs[-1][0] == 200 * MS
        assert inputs.arrive(300, 300)


def test_rate_limit_applies_to_input_stamps() -> None:
    with Inputs().running() as inputs:
        assert inputs.arrive(0.001, 0)
        assert not inputs.arrive(50, 50)  # 20 Hz cameras, 10 Hz inference: every other set
        assert inputs.arrive(100, 100)
        assert not inputs.arrive(150, 150)
        assert inputs.arrive(195, 192)  # 92 ms after the last t0 used: within the 10% jitter allowance
        assert [t0 for _, t0 in inputs.runs] == [0, 100 * MS, 192 * MS]
        assert inputs.trigger.passed_over == 2


def test_a_set_that_came_during_a_long_run_is_not_started_on_late() -> None:
    with Inputs().running() as inputs:
        assert inputs.arrive(0.001, 0)
        # The set stamped 100 ms was announced at 100 ms while the run went on until 140 ms:
        # by then it is stale, and the next set (due within a period) is waited for.
        inputs.clock.set(100 * MS)
        inputs.t0 = 100 * MS
        with inputs.trigger._count_lock:  # announce without waking the trigger, as during a run
            inputs.trigger._announced, inputs.trigger._announced_at = inputs.t0, 100 * MS
            inputs.trigger._pending += 1
        assert not inputs.arrive(140, 100)
        assert inputs.arrive(200, 200)
        assert inputs.trigger.passed_over == 1


def test_stamps_going_backwards_start_over_at_once() -> None:
    with Inputs().running() as inputs:
        assert inputs.arrive(0.001, 5000)
        assert inputs.arrive(100, 5100)
        assert inputs.arrive(200, 3600)  # the stamps jumped 1.5 s back (a looped bag): run on the new ones
        assert inputs.arrive(300, 3700)
