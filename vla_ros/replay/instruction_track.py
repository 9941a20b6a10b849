"""A bag's std_msgs/String instructions (an arm's task, a vehicle's navigation) replayed by the
node's own rule (`sensors/instruction.py`): the instruction in force at each tick, by receive time."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vla_ros.replay.bag_io import read_messages
from vla_ros.sensors.drops import DropCounter
from vla_ros.sensors.instruction import InstructionInput


class InstructionTrack:
    def __init__(self, bag: str | Path, topic: str, drops: DropCounter, **rule: Any) -> None:
        """`rule`: InstructionInput's keywords (initial, empty_clears, max_age_s, max_chars, label),
        as the node sets them for this input."""
        self.topic = topic
        self.unreadable = 0
        self._drops = drops
        self._rule = rule
        self._messages: list[tuple[int, Any]] = []
        for m in read_messages(bag, [topic]):
            if isinstance(getattr(m.msg, "data", None), str):
                self._messages.append((m.log_time_ns, m.msg))
            else:
                self.unreadable += 1
        self._restart()

    def _restart(self) -> None:
        self._input = InstructionInput(self.topic, self._drops, **self._rule)
        self._next = 0
        self._last_ns: int | None = None

    def at(self, tick_ns: int) -> str | None:
        """The instruction in force at `tick_ns` (None: none). Ticks are asked in order; an earlier
        one replays the track from its start."""
        if self._last_ns is not None and tick_ns < self._last_ns:
            self._restart()
        while self._next < len(self._messages) and self._messages[self._next][0] <= tick_ns:
            stamp, msg = self._messages[self._next]
            self._input.on_message(msg, stamp)
            self._next += 1
        self._last_ns = tick_ns
        return self._input.current(tick_ns) or None

    def stats(self) -> dict[str, Any]:
        return {"messages": len(self._messages) + self.unreadable, "unreadable": self.unreadable,
                "distinct": len({msg.data.strip() for _, msg in self._messages}), "default": self._rule.get("initial", "")}
