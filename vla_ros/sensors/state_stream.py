"""What the two state streams share: odometry for a vehicle (ego_buffer.py), joint states for an
arm (joint_state_buffer.py). The pipeline drives either through this interface: stamps checked
by the pipeline, messages parsed and stored by the stream, drops counted per stream and in the
pipeline's counter, a bounded window of the newest states."""
from __future__ import annotations

import bisect

from vla_ros.sensors.drops import DropCounter

# States kept at most (a burst evicts the oldest): 4096 covers 1 kHz over the window.
MAX_STATES = 4096


class StateUnavailable(ValueError):
    """A stream cannot give the state a stack needs at t0. `kind` is a short, countable reason."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class StateStream:
    def __init__(self, topic: str, keep_ns: int, drops: DropCounter) -> None:
        self.topic = topic
        self.keep_ns = keep_ns
        self._drops = drops
        self._stamps: list[int] = []
        self.received = 0
        self.accepted = 0
        self.drops: dict[str, int] = {}

    @property
    def newest_ns(self) -> int | None:
        return self._stamps[-1] if self._stamps else None

    def __len__(self) -> int:
        return len(self._stamps)

    def drop(self, reason: str, detail: str = "") -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        self._drops.drop(reason, self.topic, detail)

    def _keep_window(self, *columns: list) -> None:
        """After an append: forget states older than keep_ns before the newest, and beyond
        MAX_STATES, in the stamps and in each parallel column."""
        stamps = self._stamps
        cut = max(bisect.bisect_left(stamps, stamps[-1] - self.keep_ns), len(stamps) - MAX_STATES)
        if cut:
            del stamps[:cut]
            for column in columns:
                del column[:cut]
