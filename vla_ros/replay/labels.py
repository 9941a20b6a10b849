"""Maneuver labels of recorded drives and the maneuver a reasoning sentence names, so that the
evaluation can score the model's reasoning against what the ego really did.

A label is the `maneuver` of the driving world's `/sim/ground_truth` JSON (what the ego does over
the next 3 s); a sentence names a maneuver by its action phrase after "; " (the grammar in
docs/sim.md). The phrases live here because replay, the simulator and training all use them.
"""
from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from pathlib import Path

from vla_ros.replay.bag_io import read_messages

GROUND_TRUTH_TOPIC = "/sim/ground_truth"

# maneuver -> the action phrase a sentence uses for it
ACTION_WORDS = {
    "stop": "stop",
    "slow_down": "slow down",
    "speed_up": "speed up",
    "follow": "follow the lead vehicle",
    "keep_speed": "keep speed",
}

# Longest phrase first: "follow the lead vehicle" must not be read as something shorter.
_ACTION_RE = re.compile(r";\s*(" + "|".join(re.escape(w) for w in sorted(ACTION_WORDS.values(), key=len, reverse=True)) + r")\b")
_WORD_TO_ACTION = {w: k for k, w in ACTION_WORDS.items()}


def maneuver_of(text: str) -> str | None:
    """The maneuver a sentence names (`slow_down`, ...), or None if it names none."""
    m = _ACTION_RE.search(text.lower())
    return _WORD_TO_ACTION[m.group(1)] if m else None


@dataclass(frozen=True)
class ManeuverLabels:
    """Labels of one bag by header stamp (sorted)."""

    stamps_ns: list[int]
    maneuvers: list[str]

    def __len__(self) -> int:
        return len(self.stamps_ns)

    def at(self, t0_ns: int, tolerance_ns: int = 50_000_000) -> str | None:
        """The label nearest to t0 within `tolerance_ns`, or None."""
        i = bisect.bisect_left(self.stamps_ns, t0_ns)
        best = None
        best_err = tolerance_ns + 1
        for j in (i - 1, i):
            if 0 <= j < len(self.stamps_ns) and abs(self.stamps_ns[j] - t0_ns) < best_err:
                best, best_err = self.maneuvers[j], abs(self.stamps_ns[j] - t0_ns)
        return best


def read_maneuver_labels(bag: str | Path, topic: str = GROUND_TRUTH_TOPIC) -> ManeuverLabels:
    """Every parsable label on `topic` (none when the bag has no such topic). A record whose JSON
    lacks `stamp_ns` or `maneuver` is skipped: labels are optional input to the evaluation."""
    pairs: list[tuple[int, str]] = []
    for m in read_messages(bag, [topic]):
        try:
            data = json.loads(m.msg.data)
            pairs.append((int(data["stamp_ns"]), str(data["maneuver"])))
        except (AttributeError, TypeError, ValueError, KeyError):
            continue
    pairs.sort()
    return ManeuverLabels([p[0] for p in pairs], [p[1] for p in pairs])
