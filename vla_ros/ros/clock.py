"""ROS time for the node: the system clock, or simulated time driven by /clock (use_sim_time),
and timers that fire on either."""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

_LOG = logging.getLogger("vla_ros.node")


class WallClock:
    """ROS time when use_sim_time is false: the system clock (Unix epoch)."""

    def now_ns(self) -> int:
        return time.time_ns()

    _last_now: int | None = None

    def wait_until(self, deadline_ns: int, stop: threading.Event, timeout_s: float = 0.05) -> None:
        """Sleep until the clock reaches `deadline_ns`, `stop` is set, or `timeout_s` passes.
        A clock that has not moved since the last call (a subclass on a paused /clock: what is
        left is sim time, not wall time) gets at least 1 ms, so a waiting timer thread, perhaps
        at a real-time priority, never spins; the system clock always moves."""
        now = self.now_ns()
        remaining = deadline_ns - now
        if remaining > 0:
            paused = now == self._last_now
            self._last_now = now
            stop.wait(max(min(remaining / 1e9, timeout_s), 0.001 if paused else 0.0))

    def wake(self) -> None:
        pass

    def started(self) -> bool:
        return True


class SimClock:
    """ROS time when use_sim_time is true: the newest /clock message. Before the first one the
    time is 0, as in ROS 2, and timers do not fire."""

    def __init__(self) -> None:
        self._now = 0
        self._cond = threading.Condition()

    def now_ns(self) -> int:
        with self._cond:
            return self._now

    def set(self, now_ns: int) -> None:
        """A /clock message. Time may jump backwards (a looped bag): timers re-arm."""
        with self._cond:
            self._now = now_ns
            self._cond.notify_all()

    def wait_until(self, deadline_ns: int, stop: threading.Event, timeout_s: float = 0.05) -> None:
        """Return when a /clock message reaches `deadline_ns`, or after `timeout_s` (the caller
        re-checks: time may also have jumped backwards, or a stop been requested)."""
        with self._cond:
            if self._now < deadline_ns and not stop.is_set():
                self._cond.wait(timeout_s)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def started(self) -> bool:
        """False until the first /clock message."""
        return self.now_ns() > 0


class Clock(Protocol):
    """What timers and the node core need of a clock (the rclpy node adapts its own clock)."""

    def now_ns(self) -> int: ...

    def wait_until(self, deadline_ns: int, stop: threading.Event, timeout_s: float = 0.05) -> None: ...

    def wake(self) -> None: ...

    def started(self) -> bool: ...


class Timer:
    """Calls `callback(now_ns)` every `period_s` of the given clock on its own thread.

    Deadlines advance by whole periods from the start, so a slow callback does not shift later
    ticks (the missed ones are counted in `missed`); a clock jump backwards re-arms the timer.
    A callback that raises is counted in `errors` and logged, and the timer keeps ticking: the
    control tick also runs the watchdog, so its thread must never die of one bad tick.
    """

    def __init__(self, name: str, clock: Clock, period_s: float, callback: Callable[[int], None],
                 realtime_priority: int = 0) -> None:
        """`realtime_priority` 1..99: the timer's thread asks for SCHED_FIFO at that priority
        (`scheduling` then says what it got); 0: the normal scheduler."""
        self.name = name
        self.clock = clock
        self.period_ns = round(period_s * 1e9)
        self.callback = callback
        self.realtime_priority = realtime_priority
        self.scheduling = "normal"
        self.missed = 0
        self.fired = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending_target: tuple[int, int, float] | None = None
        self._shift_lock = threading.Lock()

    def align(self, target_ns: int, max_step_ns: int, gain: float = 0.5) -> None:
        """Move the schedule a little towards firing at `target_ns` (modulo the period).

        Used to phase-lock publishing to when results become ready: each call shifts the next
        deadline by at most `max_step_ns`, so consecutive periods change by no more than that."""
        with self._shift_lock:
            self._pending_target = (target_ns, max_step_ns, gain)

    def _apply_alignment(self, deadline: int) -> int:
        with self._shift_lock:
            pending, self._pending_target = self._pending_target, None
        if pending is None:
            return deadline
        target, max_step, gain = pending
        half = self.period_ns // 2
        error = (target - deadline + half) % self.period_ns - half  # wrapped into [-P/2, P/2)
        return deadline + int(max(-max_step, min(max_step, gain * error)))

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"vla_ros-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.clock.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _set_priority(self) -> None:
        """SCHED_FIFO for this thread only (Linux schedules threads, and pid 0 is the caller)."""
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.realtime_priority))
            self.scheduling = f"SCHED_FIFO {self.realtime_priority}"
        except (AttributeError, OSError) as exc:  # not Linux, or no CAP_SYS_NICE / rtprio limit
            self.scheduling = f"normal (SCHED_FIFO {self.realtime_priority} refused: {exc})"
            _LOG.warning("%s timer: real-time priority %d not permitted, running at normal priority: %s",
                         self.name, self.realtime_priority, exc)

    def _run(self) -> None:
        if self.realtime_priority > 0:
            self._set_priority()
        deadline: int | None = None
        while not self._stop.is_set():
            if not self.clock.started():  # sim time is 0 until the first /clock
                self._stop.wait(0.01)
                continue
            now = self.clock.now_ns()
            if deadline is None or now < deadline - 2 * self.period_ns:
                deadline = now + self.period_ns  # first tick, or the clock went backwards
            if now < deadline:
                deadline = self._apply_alignment(deadline)
                self.clock.wait_until(deadline, self._stop)
                continue
            self.fired += 1
            try:
                self.callback(now)
            except Exception as exc:  # noqa: BLE001 - see the class docstring
                self.errors += 1
                if self.errors == 1:
                    _LOG.exception("%s timer: the callback failed (later failures are counted and logged briefly)", self.name)
                elif self.errors & (self.errors - 1) == 0:  # 2, 4, 8, ...: visible, never a flood
                    _LOG.warning("%s timer: the callback failed %d times, last: %s: %s", self.name, self.errors, type(exc).__name__, exc)
            deadline += self.period_ns
            after = self.clock.now_ns()
            if after >= deadline:  # the callback overran: skip the ticks it covered
                skipped = (after - deadline) // self.period_ns + 1
                self.missed += int(skipped)
                deadline += int(skipped) * self.period_ns
