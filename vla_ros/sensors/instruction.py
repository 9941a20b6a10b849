"""A language instruction that arrives as std_msgs/String: an arm's task, a vehicle's navigation.

The latest message is the instruction in force. A change is logged and counted; a malformed
message is a counted drop. What an empty string means differs: an arm keeps its task (dropped,
counted as empty_instruction), while a navigation input is cleared by it (the route ended).
A navigation instruction also expires: turn-by-turn text ("in 40m") is wrong once the car has
moved on, so one received longer ago than `max_age_s` is no longer used.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from vla_ros.sensors.drops import DropCounter

_LOG = logging.getLogger("vla_ros.node")

# A navigation instruction is a sentence; a longer text is refused rather than fed to the prompt.
MAX_NAVIGATION_CHARS = 500


class InstructionInput:
    def __init__(self, topic: str, drops: DropCounter, initial: str = "", empty_clears: bool = False,
                 max_age_s: float = 0.0, label: str = "instruction", max_chars: int = 0) -> None:
        """`max_age_s` 0: never expires. `label` names it in logs ('instruction', 'navigation').
        `max_chars` > 0: a longer text is dropped (`instruction_too_long`), the previous one kept."""
        self.topic = topic
        self._drops = drops
        self._empty_clears = empty_clears
        self._max_age_ns = int(max_age_s * 1e9)
        self._label = label
        self._max_chars = max_chars
        self._lock = threading.Lock()
        self._text = initial.strip()
        self._configured = True  # the initial text never expires; a received one does
        self._received_ns: int | None = None
        self.changes = 0
        self.expired = 0  # ticks that found the instruction too old

    def on_message(self, msg: Any, now_ns: int | None) -> None:
        """A std_msgs/String received at `now_ns` (the node's clock; None before sim time has
        started: its age then counts from the first tick that uses it). Never raises."""
        try:
            text = str(msg.data).strip()
        except Exception as exc:  # noqa: BLE001 - a malformed message is counted, never raised
            self._drops.drop("bad_message", self.topic, f"{type(exc).__name__}: {exc}")
            return
        if not text and not self._empty_clears:
            self._drops.drop("empty_instruction", self.topic, f"an empty {self._label} is ignored")
            return
        if self._max_chars and len(text) > self._max_chars:
            self._drops.drop("instruction_too_long", self.topic,
                             f"a {self._label} of {len(text)} characters (at most {self._max_chars}) is ignored")
            return
        with self._lock:
            if text != self._text:
                self.changes += 1
                _LOG.info("%s: %r (was %r)", self._label, text, self._text)
            self._text = text
            self._configured = False
            self._received_ns = now_ns

    def current(self, now_ns: int) -> str:
        """The instruction in force at `now_ns` for a tick ('' : none, or expired: counted)."""
        with self._lock:
            text = self._in_force(now_ns)
            if self._text and not text:
                self.expired += 1
            return text

    def in_force(self, now_ns: int) -> str:
        """The same, for a look that is not a tick (diagnostics): nothing is counted."""
        with self._lock:
            return self._in_force(now_ns)

    def _in_force(self, now_ns: int) -> str:
        if not self._text or self._configured or not self._max_age_ns:
            return self._text
        if self._received_ns is None:
            self._received_ns = now_ns
        return "" if now_ns - self._received_ns > self._max_age_ns else self._text

    @property
    def latest(self) -> str:
        """The last instruction received, whatever its age (for diagnostics)."""
        with self._lock:
            return self._text

    def age_s(self, now_ns: int) -> float | None:
        with self._lock:
            return None if self._received_ns is None else (now_ns - self._received_ns) / 1e9
