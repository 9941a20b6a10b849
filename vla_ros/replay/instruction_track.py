"""A bag's std_msgs/String instructions (an arm's task, a vehicle's navigation) replayed by the
node's own rule (`sensors/instruction.py`): the instruction in force at each tick, by receive time."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from vla_ros.replay.bag_io import read_messages
from vla_ros.sensors.drops import DropCounter
from vla_ros.sensors.instruction import InstructionInput


class InstructionTrack:
    def __init__(self, bag: str | Path, topic: str, drops: DropCounter, count_earlier: bool = True, **rule: Any) -> None:
        """`rule`: InstructionInput's keywords (initial, empty_clears, max_age_s, max_chars, label,
        forbidden), as the node sets them for this input. `count_earlier` False (a later part of
        a bag split between workers): messages before the first tick asked for are replayed
        without counting their drops, which the part before counted."""
        self.topic = topic
        self.unreadable = 0
        self._drops = drops
        self._count_earlier = count_earlier
        self._rule = rule
        self._messages: list[tuple[int, Any]] = []
        limit = rule.get("max_chars") or 0
        for m in read_messages(bag, [topic]):
            data = getattr(m.msg, "data", None)
            if isinstance(data, str):
                # kept shortened: a text over the limit is refused whatever follows the cut
                self._messages.append((m.log_time_ns, SimpleNamespace(data=data[:limit + 1] if limit else data)))
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
        if self._last_ns is None and not self._count_earlier:
            quiet = InstructionInput(self.topic, DropCounter(), **self._rule)
            while self._next < len(self._messages) and self._messages[self._next][0] < tick_ns:
                quiet.on_message(self._messages[self._next][1], self._messages[self._next][0])
                self._next += 1
            self._input = quiet
            self._input.retarget(self._drops)
        while self._next < len(self._messages) and self._messages[self._next][0] <= tick_ns:
            stamp, msg = self._messages[self._next]
            self._input.on_message(msg, stamp)
            self._next += 1
        self._last_ns = tick_ns
        return self._input.current(tick_ns) or None

    def reject(self, text: str, reason: str) -> None:
        """The policy refused `text`: cleared and counted as the node clears it, so the next ticks
        run without it until another instruction arrives."""
        self._input.reject(text, reason)

    @property
    def expired(self) -> int:
        """Ticks asked for at which the instruction had expired."""
        return self._input.expired

    def stats(self) -> dict[str, Any]:
        return {"messages": len(self._messages) + self.unreadable, "unreadable": self.unreadable,
                "distinct": len({msg.data.strip() for _, msg in self._messages}), "default": self._rule.get("initial", ""),
                "expired_ticks": self.expired}
