"""A per-camera ring buffer of undecoded image messages, keyed by stamp.

Messages are stored as received (payload bytes + stamp) and decoded only when a stack needs
them, straight to the model input size; decoded frames are cached by stamp (LRU), so the next
tick, which reuses count-1 of this tick's frames per camera, decodes only the new one.
At receive time only the header is read: an image declaring more pixels than the bound is
dropped before it takes any room, and the buffer holds at most `capacity` messages (a burst
evicts the oldest), so memory stays bounded whatever arrives.
"""
from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_ros.sensors.drops import DropCounter
from vla_ros.sensors.image_decode import DecodeError, as_uint8_buffer, check_raw, compressed_header, decode_compressed, decode_raw, format_mismatch


@dataclass
class BufferedImage:
    """One received image message, not yet decoded."""

    stamp_ns: int
    compressed: bool
    data: np.ndarray  # uint8 view of the payload
    fmt: str = ""  # CompressedImage.format
    encoding: str = ""  # Image fields below
    height: int = 0
    width: int = 0
    step: int = 0


@dataclass
class CameraStats:
    received: int = 0
    accepted: int = 0
    decoded: int = 0
    decode_cache_hits: int = 0
    decode_errors: int = 0
    evicted: int = 0
    evicted_over_capacity: int = 0  # of `evicted`: pushed out by a burst, not by age
    format_mismatch: int = 0  # `format` names JPEG and the data is PNG or the other way round (decoded)
    drops: dict[str, int] = field(default_factory=dict)

    def count_drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1


class CameraBuffer:
    def __init__(
        self,
        name: str,
        topic: str,
        compressed: bool,
        size_hw: tuple[int, int],
        keep_ns: int,
        decoded_cache: int,
        drops: DropCounter,
        max_hw: tuple[int, int] | None = None,
        capacity: int = 64,
    ) -> None:
        """`max_hw`: the largest (height, width) an image may declare; `capacity`: messages kept."""
        self.name = name
        self.topic = topic
        self.compressed = compressed
        self.size_hw = size_hw
        self.keep_ns = keep_ns
        self.max_hw = max_hw
        self.capacity = capacity
        self.stats = CameraStats()
        self._drops = drops
        self._stamps: list[int] = []
        self._entries: list[BufferedImage] = []
        self._decoded: OrderedDict[int, np.ndarray] = OrderedDict()
        self._decoded_cap = decoded_cache

    # -- ingest ---------------------------------------------------------------------------

    @property
    def newest_ns(self) -> int | None:
        return self._stamps[-1] if self._stamps else None

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, msg: Any, stamp: int) -> bool:
        """Store a message whose stamp the caller has checked to be newer than `newest_ns`.
        Returns False (counted, logged) if the message is unusable."""
        try:
            entry = self._entry_from(msg, stamp)
        except DecodeError as exc:
            self.drop(exc.kind, exc.detail)
            return False
        self._stamps.append(stamp)
        self._entries.append(entry)
        self.stats.accepted += 1
        self._evict_older_than(stamp - self.keep_ns)
        if len(self._entries) > self.capacity:
            over = len(self._entries) - self.capacity
            self._evict_first(over)
            self.stats.evicted_over_capacity += over
        return True

    def drop(self, reason: str, detail: str = "") -> None:
        self.stats.count_drop(reason)
        self._drops.drop(reason, self.topic, detail)

    def _entry_from(self, msg: Any, stamp: int) -> BufferedImage:
        if self.compressed:
            if not hasattr(msg, "format") or not hasattr(msg, "data"):
                raise DecodeError("wrong_type", "expected sensor_msgs/CompressedImage (format, data)")
            data = as_uint8_buffer(msg.data)
            kind, _, _ = compressed_header(str(msg.format), data, self.max_hw)  # header only: refuses size bombs
            if format_mismatch(str(msg.format), kind):
                self.stats.format_mismatch += 1
            return BufferedImage(stamp, True, data, fmt=str(msg.format))
        if not all(hasattr(msg, f) for f in ("encoding", "height", "width", "step", "data")):
            raise DecodeError("wrong_type", "expected sensor_msgs/Image (encoding, height, width, step, data)")
        data = as_uint8_buffer(msg.data)
        check_raw(str(msg.encoding), int(msg.height), int(msg.width), int(msg.step), data.size, self.max_hw)
        return BufferedImage(
            stamp, False, data, encoding=str(msg.encoding), height=int(msg.height), width=int(msg.width), step=int(msg.step)
        )

    def _evict_older_than(self, limit_ns: int) -> None:
        self._evict_first(bisect.bisect_left(self._stamps, limit_ns))

    def _evict_first(self, n: int) -> None:
        if n:
            for stamp in self._stamps[:n]:
                self._decoded.pop(stamp, None)
            del self._stamps[:n]
            del self._entries[:n]
            self.stats.evicted += n

    def reset(self) -> None:
        self._stamps.clear()
        self._entries.clear()
        self._decoded.clear()

    # -- lookup and decode ----------------------------------------------------------------

    def nearest(self, target_ns: int, tolerance_ns: int) -> BufferedImage | None:
        """The message whose stamp is nearest to `target_ns`, if within `tolerance_ns`."""
        i = bisect.bisect_left(self._stamps, target_ns)
        best: BufferedImage | None = None
        best_err = tolerance_ns + 1
        for j in (i - 1, i):
            if 0 <= j < len(self._stamps):
                err = abs(self._stamps[j] - target_ns)
                if err < best_err:
                    best, best_err = self._entries[j], err
        return best

    def frame(self, entry: BufferedImage, decoded: np.ndarray | None = None) -> np.ndarray:
        """Decoded RGB (H, W, 3) of a buffered message, from the cache when possible; `decoded`:
        its pixels decoded elsewhere for this tick (stored and counted as if decoded here).
        A message that fails to decode is removed from the buffer, counted, and re-raised."""
        cached = self._decoded.get(entry.stamp_ns)
        if cached is not None:
            self._decoded.move_to_end(entry.stamp_ns)
            self.stats.decode_cache_hits += 1
            return cached
        if decoded is None:
            try:
                decoded = self.decode(entry)
            except DecodeError as exc:
                self.stats.decode_errors += 1
                self._remove(entry)
                self.drop(exc.kind, exc.detail)
                raise
        decoded.flags.writeable = False  # shared by consecutive stacks
        self.stats.decoded += 1
        self._decoded[entry.stamp_ns] = decoded
        while len(self._decoded) > self._decoded_cap:
            self._decoded.popitem(last=False)
        return decoded

    def is_decoded(self, entry: BufferedImage) -> bool:
        return entry.stamp_ns in self._decoded

    def decode(self, entry: BufferedImage) -> np.ndarray:
        """The message's pixels at the buffer's size; touches no state of the buffer, so several
        threads may decode at once (PIL releases the interpreter lock while it decodes)."""
        if entry.compressed:
            return decode_compressed(entry.fmt, entry.data, self.size_hw, self.max_hw)
        return decode_raw(entry.encoding, entry.height, entry.width, entry.step, entry.data, self.size_hw, self.max_hw)

    def decode_or_none(self, entry: BufferedImage) -> np.ndarray | None:
        """`decode` for another thread: None instead of an error, so no exception (and no
        traceback holding the decoder's frames) is stored in a Future and re-raised later."""
        try:
            return self.decode(entry)
        except DecodeError:
            return None

    def _remove(self, entry: BufferedImage) -> None:
        i = bisect.bisect_left(self._stamps, entry.stamp_ns)
        if i < len(self._stamps) and self._entries[i] is entry:
            del self._stamps[i]
            del self._entries[i]
