"""A language instruction that arrives as std_msgs/String: an arm's task, a vehicle's navigation.

The latest message is the instruction in force. A change is logged (at most every few seconds,
so an alternating publisher cannot flood the log) and counted; a malformed message is a counted
drop. What an empty string means differs: an arm keeps its task (dropped, counted as
empty_instruction), while a navigation input is cleared by it (the route ended). A navigation
instruction also expires: turn-by-turn text ("in 40m") is wrong once the car has moved on, so
one received longer ago than `max_age_s` (or stamped after now: the clock jumped back) is no
longer used. `vla-ros eval` replays a bag's instructions through this same rule
(replay/instruction_track.py).
"""
from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

from vla_ros.sensors.drops import DropCounter

_LOG = logging.getLogger("vla_ros.node")

# A navigation instruction is a sentence ("Turn left onto Main Street in 40m"). At most 128
# characters keeps it within the prompt's 512-token budget for any byte-level BPE (a UTF-8
# character is at most 4 bytes, each byte at most one token), so its length never makes the
# policy refuse a tick.
MAX_NAVIGATION_CHARS = 128
# The model's control tokens (<|...|> special tokens, <iN> trajectory tokens) may not be smuggled
# into the prompt inside an instruction. Other tokens a tokenizer added (Qwen3's <think>,
# <tool_call>) the prompt refuses (RouteRefusedError): the node and eval then clear the route.
NAVIGATION_FORBIDDEN = re.compile(r"<\|[^<>]*\|>|<i\d+>")
_CHANGE_LOG_INTERVAL_S = 5.0
_LOGGED_CHARS = 80


def navigation_rule(max_age_s: float) -> dict[str, Any]:
    """InstructionInput's keywords for a vehicle's navigation input (the node's and eval's)."""
    return {"empty_clears": True, "max_age_s": max_age_s, "label": "navigation", "max_chars": MAX_NAVIGATION_CHARS,
            "forbidden": NAVIGATION_FORBIDDEN}


class InstructionInput:
    def __init__(self, topic: str, drops: DropCounter, initial: str = "", empty_clears: bool = False,
                 max_age_s: float = 0.0, label: str = "instruction", max_chars: int = 0,
                 forbidden: re.Pattern[str] | None = None) -> None:
        """`max_age_s` 0: never expires. `label` names it in logs ('instruction', 'navigation').
        `max_chars` > 0: a longer text is dropped (`instruction_too_long`), the previous one kept;
        so is a text matching `forbidden` (`instruction_refused`)."""
        self.topic = topic
        self._drops = drops
        self._empty_clears = empty_clears
        self._max_age_ns = int(max_age_s * 1e9)
        self._label = label
        self._max_chars = max_chars
        self._forbidden = forbidden
        self._lock = threading.Lock()
        self._text = initial.strip()
        self._configured = True  # the initial text never expires; a received one does
        self._received_ns: int | None = None
        self._logged_at = float("-inf")
        self.changes = 0
        self.expired = 0  # ticks that found the instruction too old

    def on_message(self, msg: Any, now_ns: int | None) -> None:
        """A std_msgs/String received at `now_ns` (the node's clock; None before sim time has
        started: its age then counts from the first tick that uses it). Never raises."""
        data = getattr(msg, "data", None)
        if not isinstance(data, str):
            self._drops.drop("bad_message", self.topic, f"a {self._label} message without string data ({type(data).__name__})")
            return
        text = data.strip()
        if not text and not self._empty_clears:
            self._drops.drop("empty_instruction", self.topic, f"an empty {self._label} is ignored")
            return
        if self._max_chars and len(text) > self._max_chars:
            self._drops.drop("instruction_too_long", self.topic,
                             f"a {self._label} of {len(text)} characters (at most {self._max_chars}) is ignored")
            return
        if self._forbidden is not None and self._forbidden.search(text):
            self._drops.drop("instruction_refused", self.topic, f"a {self._label} holding model control tokens is ignored")
            return
        with self._lock:
            if text != self._text:
                self.changes += 1
                self._log_change(text)
            self._text = text
            self._configured = False
            self._received_ns = now_ns

    def _log_change(self, text: str) -> None:
        now = time.monotonic()
        if now - self._logged_at >= _CHANGE_LOG_INTERVAL_S:
            self._logged_at = now
            _LOG.info("%s: %r (change %d; changes are logged at most every %.0f s)", self._label,
                      text[:_LOGGED_CHARS], self.changes, _CHANGE_LOG_INTERVAL_S)

    def retarget(self, drops: DropCounter) -> None:
        """Count later drops in `drops` (eval replays a bag part's earlier messages uncounted)."""
        self._drops = drops

    def reject(self, text: str, reason: str) -> None:
        """The policy refused `text`: clear it (if still in force) so the next ticks run without,
        counted as an `instruction_refused` drop with the policy's reason."""
        with self._lock:
            if self._text != text:
                return
            self._text = ""
        self._drops.drop("instruction_refused", self.topic, f"the policy refused the {self._label}: {reason}")

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
        age = now_ns - self._received_ns
        return "" if age > self._max_age_ns or age < 0 else self._text

    @property
    def latest(self) -> str:
        """The last instruction received, whatever its age (for diagnostics)."""
        with self._lock:
            return self._text

    def age_s(self, now_ns: int) -> float | None:
        with self._lock:
            return None if self._received_ns is None else (now_ns - self._received_ns) / 1e9
