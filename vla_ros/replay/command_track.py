"""The recorded joint commands of an arm bag: what the arm was told to do after t0, the ground
truth an action chunk is compared with.

Every trajectory_msgs/JointTrajectory on the command topic is read up front. Point k of a message
is due at header.stamp + points[k].time_from_start (a zero stamp means "on receipt", as
joint_trajectory_controller takes it: the bag's receive time). As in that controller, a newer
message replaces what is left of the older ones from its first point on. A message without every
configured joint, with arrays of the wrong length or with NaN/inf is dropped and counted. The
commanded position at any instant is interpolated linearly between the points around it.
"""
from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla_ros.replay.bag_io import read_messages
from vla_ros.replay.ground_truth import FutureUnavailable
from vla_ros.sensors.stamps import StampError, stamp_ns, to_ns

# Points further apart than this are not interpolated across (a controller restart, a lost stream).
MAX_COMMAND_GAP_S = 0.1


def _duration_ns(d: Any) -> int:
    return int(d.sec) * 1_000_000_000 + int(d.nanosec)


def command_points(msg: Any, log_time_ns: int, joint_names: tuple[str, ...]) -> list[tuple[int, np.ndarray]]:
    """(due time, positions in `joint_names` order) per point of one JointTrajectory; ValueError
    (KeyError for a missing joint, FloatingPointError for NaN/inf) names what is wrong."""
    names = [str(n) for n in msg.joint_names]
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in joint_names if n not in index]
    if missing:
        raise KeyError(f"joints {missing} missing (message has {names})")
    order = [index[n] for n in joint_names]
    try:
        start = stamp_ns(msg)
    except StampError:
        start = 0
    start = start or log_time_ns  # stamp zero: start on receipt
    points = []
    for k, p in enumerate(msg.points):
        pos = np.asarray(p.positions, dtype=np.float64).reshape(-1)
        if len(pos) != len(names):
            raise ValueError(f"point {k} has {len(pos)} positions for {len(names)} joints")
        pos = pos[order]
        if not np.all(np.isfinite(pos)):
            raise FloatingPointError(f"point {k} holds NaN or inf")
        points.append((start + _duration_ns(p.time_from_start), pos))
    if not points:
        raise ValueError("no points")
    if any(b[0] <= a[0] for a, b in zip(points, points[1:])):
        raise ValueError("points are not in strictly increasing time")
    return points


@dataclass
class CommandTrack:
    joint_names: tuple[str, ...]
    max_gap_ns: int = to_ns(MAX_COMMAND_GAP_S)
    times_ns: list[int] = field(default_factory=list)
    positions: list[np.ndarray] = field(default_factory=list)
    messages: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    _arrays: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)  # (stamps, positions) until the next add

    @classmethod
    def from_bag(cls, bag: str | Path, topic: str, joint_names: tuple[str, ...], max_gap_s: float = MAX_COMMAND_GAP_S) -> "CommandTrack":
        track = cls(tuple(joint_names), to_ns(max_gap_s))
        for m in read_messages(bag, [topic]):
            track.add(m.msg, m.log_time_ns)
        return track

    def add(self, msg: Any, log_time_ns: int) -> bool:
        """One recorded message (None: one that did not deserialize). False if it was dropped."""
        self.messages += 1
        if msg is None:
            self.dropped["deserialize_error"] += 1
            return False
        try:
            points = command_points(msg, log_time_ns, self.joint_names)
        except KeyError:
            self.dropped["joint_missing"] += 1
            return False
        except FloatingPointError:
            self.dropped["not_finite"] += 1
            return False
        except (ValueError, TypeError, AttributeError):
            self.dropped["bad_command"] += 1
            return False
        cut = bisect.bisect_left(self.times_ns, points[0][0])  # the newer message takes over from here
        del self.times_ns[cut:], self.positions[cut:]
        self._arrays = None
        for t, pos in points:
            self.times_ns.append(t)
            self.positions.append(pos)
        return True

    def __len__(self) -> int:
        return len(self.times_ns)

    def at(self, times_ns: np.ndarray) -> np.ndarray:
        """(N, J) commanded positions at increasing `times_ns`; FutureUnavailable (skip reasons
        commands_missing, commands_end, command_gap) when any instant is not covered."""
        if not self.times_ns:
            raise FutureUnavailable("commands_missing", "no usable command in the bag")
        if self._arrays is None:
            self._arrays = (np.asarray(self.times_ns, dtype=np.int64), np.stack(self.positions))
        stamps, pos = self._arrays
        t = np.asarray(times_ns, dtype=np.int64)
        if t[0] < stamps[0]:
            raise FutureUnavailable("commands_missing", f"no command before {(stamps[0] - t[0]) / 1e9:.3f} s after t0")
        if t[-1] > stamps[-1]:
            raise FutureUnavailable("commands_end", f"the recorded commands end {(t[-1] - stamps[-1]) / 1e9:.3f} s before the chunk does")
        hi = np.clip(np.searchsorted(stamps, t, side="left"), 1, len(stamps) - 1)
        lo = hi - 1
        exact = stamps[hi] == t
        gap = np.where(exact, 0, stamps[hi] - stamps[lo])
        if len(stamps) > 1 and gap.max() > self.max_gap_ns:
            raise FutureUnavailable("command_gap", f"{gap.max() / 1e9:.3f} s between two recorded commands within the chunk")
        if len(stamps) == 1:  # only reachable when every instant is that one point
            return np.repeat(pos[:1], len(t), axis=0)
        frac = ((t - stamps[lo]) / np.maximum(stamps[hi] - stamps[lo], 1))[:, None]
        return pos[lo] + frac * (pos[hi] - pos[lo])

    def stats(self) -> dict[str, Any]:
        return {"messages": self.messages, "points": len(self.times_ns), "dropped": dict(sorted(self.dropped.items()))}
