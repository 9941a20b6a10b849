"""Counted, logged-once drops of bad input.

Every rejected message or skipped tick is counted under a reason; the first occurrence of each
(reason, source) pair is logged with the source (usually the topic), later ones only counted, so
a camera sending garbage at 30 Hz cannot flood the log.
"""
from __future__ import annotations

import logging
from collections import Counter

_LOG = logging.getLogger("vla_ros.sensors")


class DropCounter:
    def __init__(self, logger: logging.Logger = _LOG) -> None:
        self._log = logger
        self.counts: Counter[str] = Counter()
        self._logged: set[tuple[str, str]] = set()

    def drop(self, reason: str, source: str, detail: str = "") -> None:
        """Count one drop of `reason` from `source` (topic or camera); log it the first time."""
        self.counts[reason] += 1
        if (reason, source) not in self._logged:
            self._logged.add((reason, source))
            extra = f": {detail}" if detail else ""
            self._log.warning("dropped input from %s (%s)%s; further drops of this kind are only counted", source, reason, extra)

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))
