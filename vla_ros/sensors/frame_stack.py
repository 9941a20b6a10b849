"""The FrameStack: everything a VLA policy sees at one tick, and the reason a tick was skipped."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_ros.sensors.ego_buffer import EgoHistory
from vla_ros.sensors.joint_state_buffer import JointSample


@dataclass(frozen=True)
class FrameStack:
    """Views x frames, camera-major (config camera order), frames oldest -> newest.

    images:  uint8 (V, F, H, W, 3) RGB
    stamps_ns: int64 (V, F), header stamps of the messages chosen for each slot
    history: ego history ending at t0, in the t0 ego frame (vehicles); joint_state: the joint
        state at t0 (arms)
    slot_error_ms: (V, F) chosen stamp minus slot target time (t0 + offset), milliseconds
    """

    t0_ns: int
    camera_names: tuple[str, ...]
    offsets_s: tuple[float, ...]
    images: np.ndarray
    stamps_ns: np.ndarray
    history: EgoHistory | None  # a vehicle's ego history (None for an arm)
    slot_error_ms: np.ndarray
    tick_ns: int | None = None
    joint_state: JointSample | None = None  # an arm's joint state at t0 (control.mode chunk)

    @property
    def t0(self) -> float:
        """t0 in seconds."""
        return self.t0_ns / 1e9

    @property
    def stamps(self) -> np.ndarray:
        """(V, F) stamps in seconds (float64)."""
        return self.stamps_ns / 1e9

    @property
    def history_xyz(self) -> np.ndarray:
        return self.history.xyz

    @property
    def history_rot(self) -> np.ndarray:
        return self.history.rot

    @property
    def num_views(self) -> int:
        return self.images.shape[0]

    @property
    def num_frames(self) -> int:
        return self.images.shape[1]


@dataclass(frozen=True)
class StackSkip:
    """Why a tick produced no stack. `key` is the countable form, e.g.
    `missing_frame/front_wide/-0.30s`, `ego_gap`, `stale_input/front_tele`."""

    reason: str
    detail: str
    camera: str | None = None
    offset_s: float | None = None

    @property
    def key(self) -> str:
        parts = [self.reason]
        if self.camera is not None:
            parts.append(self.camera)
        if self.offset_s is not None:
            parts.append(f"{self.offset_s:+.2f}s")
        return "/".join(parts)

    def __str__(self) -> str:
        return f"{self.key}: {self.detail}"
