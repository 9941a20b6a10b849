"""Message stamps as integer nanoseconds (exact; floats only at the edges)."""
from __future__ import annotations

import math
from typing import Any

NS_PER_S = 1_000_000_000


class StampError(ValueError):
    """A message has no usable header stamp."""


def stamp_ns(msg: Any) -> int:
    """`msg.header.stamp` (sec, nanosec) as nanoseconds; raises StampError when missing/invalid."""
    try:
        stamp = msg.header.stamp
        sec, nsec = stamp.sec, stamp.nanosec
    except AttributeError as exc:
        raise StampError("message has no header.stamp") from exc
    if not isinstance(sec, (int,)) or not isinstance(nsec, (int,)):
        try:
            sec, nsec = int(sec), int(nsec)
        except (TypeError, ValueError) as exc:
            raise StampError(f"stamp fields are not integers: {sec!r}, {nsec!r}") from exc
    if sec == 0 and nsec == 0:
        raise StampError("stamp is zero (unset)")
    if sec < 0 or not 0 <= nsec < NS_PER_S:
        raise StampError(f"invalid stamp sec={sec} nanosec={nsec}")
    return sec * NS_PER_S + nsec


def to_ns(seconds: float) -> int:
    if not math.isfinite(seconds):
        raise ValueError(f"time must be finite, got {seconds}")
    return round(seconds * NS_PER_S)
