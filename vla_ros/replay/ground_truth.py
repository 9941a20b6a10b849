"""The recorded future ego path: what the car really did after t0, from the bag's odometry.

Open-loop evaluation compares a prediction made at t0 with the poses the odometry reports at
t0 + dt, ..., t0 + T*dt, expressed in the ego frame at t0 (the frame the policy predicts in).
The whole odometry stream is read up front (it is small), split into segments wherever stamps
jump backwards (a looped bag or a simulator reset), and cleaned the way the sensing pipeline
cleans it (bad poses, duplicate and out-of-order stamps dropped), so the future of a tick comes
from the same stream the tick's history came from.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vla_ros.replay.bag_io import BagMessage, read_messages
from vla_ros.sensors.ego_buffer import pose_from_odometry
from vla_ros.sensors.geometry import quat_slerp, quat_to_matrix
from vla_ros.sensors.stamps import StampError, stamp_ns


@dataclass(frozen=True)
class Future:
    """The recorded future at t0 in the t0 ego frame.

    xyz: (T, 3) positions at t0 + (i+1)*dt; rot: (T, 3, 3) orientations;
    odom_xyz: (T, 3) the same positions in the odometry frame (for output bags).
    """

    times_ns: np.ndarray  # (T,)
    xyz: np.ndarray
    rot: np.ndarray
    odom_xyz: np.ndarray
    odom_quat: np.ndarray  # (T, 4) x, y, z, w

    @property
    def heading(self) -> np.ndarray:
        """(T, 2) unit vector of the ego's x axis in the t0 frame's xy plane (along-track)."""
        h = self.rot[:, :2, 0]
        n = np.linalg.norm(h, axis=1, keepdims=True)
        return h / np.where(n > 1e-9, n, 1.0)


class FutureUnavailable(ValueError):
    """No complete recorded future at this tick. `key` is the countable skip reason."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{key}: {detail}")
        self.key = key
        self.detail = detail


@dataclass
class _Segment:
    """Odometry with strictly increasing stamps, in receive order."""

    first_log_ns: int
    stamps: list[int] = field(default_factory=list)
    xyz: list[np.ndarray] = field(default_factory=list)
    quat: list[np.ndarray] = field(default_factory=list)


class OdometryTrack:
    """All odometry of a bag, queryable for the future of any tick.

    `max_gap_ns`: the largest stamp gap interpolated across (the config's ego.max_gap_s);
    `time_jump_ns`: a stamp regression this large starts a new segment (sensing.time_jump_s).
    """

    def __init__(self, messages: list[BagMessage], max_gap_ns: int, time_jump_ns: int) -> None:
        self.max_gap_ns = max_gap_ns
        self.messages = messages  # kept for the output bag
        self.dropped = 0
        self._segments: list[_Segment] = []
        seg: _Segment | None = None
        for m in messages:
            if m.msg is None:
                self.dropped += 1
                continue
            try:
                stamp = stamp_ns(m.msg)
                xyz, quat = pose_from_odometry(m.msg)
            except (StampError, ValueError):
                self.dropped += 1
                continue
            if seg is not None and seg.stamps and stamp <= seg.stamps[-1]:
                if seg.stamps[-1] - stamp > time_jump_ns:
                    seg = None  # same rule as SensingPipeline: a big regression resets
                else:
                    self.dropped += 1  # duplicate or out-of-order, dropped like the pipeline does
                    continue
            if seg is None:
                seg = _Segment(m.log_time_ns)
                self._segments.append(seg)
            seg.stamps.append(stamp)
            seg.xyz.append(xyz)
            seg.quat.append(quat)
        self._arrays = [
            (np.asarray(s.stamps, dtype=np.int64), np.asarray(s.xyz).reshape(-1, 3), np.asarray(s.quat).reshape(-1, 4))
            for s in self._segments
        ]
        self._starts = [s.first_log_ns for s in self._segments]

    @classmethod
    def from_bag(cls, bag: str | Path, topic: str, max_gap_ns: int, time_jump_ns: int) -> "OdometryTrack":
        return cls(list(read_messages(bag, [topic])), max_gap_ns, time_jump_ns)

    def __len__(self) -> int:
        return sum(len(s.stamps) for s in self._segments)

    @property
    def num_segments(self) -> int:
        return len(self._segments)

    def future(
        self, tick_log_ns: int, t0_ns: int, pose_t0_xyz: np.ndarray, pose_t0_rot: np.ndarray, steps: int, dt_s: float
    ) -> Future:
        """The poses at t0 + (i+1)*dt, i < steps, from the segment that was current at receive
        time `tick_log_ns`, in the ego frame given by the t0 pose (odom frame: p = R0 q + p0)."""
        k = bisect.bisect_right(self._starts, tick_log_ns) - 1
        if k < 0:
            raise FutureUnavailable("future_short", "no odometry received before this tick")
        stamps, xyz_all, quat_all = self._arrays[k]
        dt_ns = round(dt_s * 1e9)
        times = t0_ns + dt_ns * np.arange(1, steps + 1, dtype=np.int64)
        if len(stamps) < 2 or times[-1] > stamps[-1]:
            have = (stamps[-1] - t0_ns) / 1e9 if len(stamps) else 0.0
            raise FutureUnavailable(
                "future_short", f"needs odometry until t0+{steps * dt_s:.1f} s, recorded until t0{have:+.2f} s"
            )
        if t0_ns < stamps[0]:
            raise FutureUnavailable("future_short", "t0 lies before this odometry segment")
        # The window [t0, last waypoint] must be covered without gaps beyond max_gap.
        lo_i = max(int(np.searchsorted(stamps, t0_ns, side="right")) - 1, 0)
        hi_i = int(np.searchsorted(stamps, times[-1], side="left"))
        gaps = np.diff(stamps[lo_i : hi_i + 1])
        if gaps.size and gaps.max() > self.max_gap_ns:
            raise FutureUnavailable("future_gap", f"odometry gap of {gaps.max() / 1e9:.3f} s inside the future window")
        hi = np.clip(np.searchsorted(stamps, times, side="left"), 1, len(stamps) - 1)
        lo = hi - 1
        frac = (times - stamps[lo]) / (stamps[hi] - stamps[lo])
        odom_xyz = xyz_all[lo] + frac[:, None] * (xyz_all[hi] - xyz_all[lo])
        odom_quat = quat_slerp(quat_all[lo], quat_all[hi], np.clip(frac, 0.0, 1.0))
        r0 = np.asarray(pose_t0_rot, dtype=np.float64)
        local_xyz = (odom_xyz - np.asarray(pose_t0_xyz)) @ r0  # row-wise R0^T (p - p0)
        local_rot = np.einsum("ji,njk->nik", r0, quat_to_matrix(odom_quat))
        return Future(times, local_xyz, local_rot, odom_xyz, odom_quat)

