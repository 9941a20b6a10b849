"""The sensing pipeline: routes messages into per-camera and ego buffers and assembles a
FrameStack at a tick, or says exactly why it cannot.

Thread-safety: one lock guards the buffers; callbacks may run on other threads than the tick.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

import numpy as np

from vla_ros.config import Config
from vla_ros.cores import available_cores
from vla_ros.sensors.camera_buffer import BufferedImage, CameraBuffer, CameraStats
from vla_ros.sensors.drops import DropCounter
from vla_ros.sensors.ego_buffer import EgoBuffer, history_span_ns
from vla_ros.sensors.frame_stack import FrameStack, StackSkip
from vla_ros.sensors.image_decode import DecodeError, image_size_bound
from vla_ros.sensors.joint_state_buffer import JointStateBuffer
from vla_ros.sensors.stamps import StampError, stamp_ns, to_ns
from vla_ros.sensors.state_stream import StateUnavailable

_LOG = logging.getLogger("vla_ros.sensors")

# Messages held per stream while waiting for the other streams to agree on a time jump.
_MAX_HELD_PER_STREAM = 16


class SensingPipeline:
    def __init__(self, config: Config, image_size_hw: tuple[int, int] | None = None, skip_repeated_t0: bool = True,
                 decode_threads: int | None = None) -> None:
        """`image_size_hw` overrides `config.image` (the model's preprocessing decides the size);
        `decode_threads` overrides `config.sensing.decode_threads`."""
        self.config = config = config.resolve_topics()  # a Config() built in code may hold relative names
        self.size_hw = image_size_hw or (config.image.height, config.image.width)
        self.offsets_ns = tuple(to_ns(o) for o in config.frames.offsets_s)
        self.tolerance_ns = to_ns(config.frames.tolerance_s)
        self.max_t0_age_ns = to_ns(config.frames.max_t0_age_s)
        self.time_jump_ns = to_ns(config.sensing.time_jump_s)
        self.future_tolerance_ns = to_ns(config.sensing.future_tolerance_s)
        # 4x the configured image size (or the model's, if larger): a model with small inputs
        # must not refuse the cameras the configuration was written for
        largest = (max(self.size_hw[0], config.image.height), max(self.size_hw[1], config.image.width))
        self.max_image_hw = image_size_bound(largest, config.sensing.max_image_width, config.sensing.max_image_height)
        self.history_interval_ns = to_ns(config.ego.history_interval_s)
        self.skip_repeated_t0 = skip_repeated_t0
        self.drops = DropCounter()
        span = -self.offsets_ns[0] + self.tolerance_ns + to_ns(config.frames.buffer_margin_s)
        self.cameras: list[CameraBuffer] = [
            CameraBuffer(
                cam.name,
                cam.topic,
                cam.compressed,
                self.size_hw,
                keep_ns=span,
                decoded_cache=max(config.image.decoded_cache_per_camera, config.frames.count),
                drops=self.drops,
                max_hw=self.max_image_hw,
                capacity=config.sensing.max_buffered_per_camera,
            )
            for cam in config.cameras
        ]
        self._by_topic = {c.topic: c for c in self.cameras}
        # The state stream: odometry of a vehicle, or joint states of an arm (control.mode chunk).
        self.ego: EgoBuffer | JointStateBuffer
        if config.chunk_mode:
            self.ego = JointStateBuffer(config.arm.joint_state_topic, config.arm.joint_names, keep_ns=span + to_ns(1.0),
                                        max_age_ns=to_ns(config.arm.max_state_age_s), drops=self.drops)
        else:
            ego_keep = history_span_ns(config.ego.history_steps, config.ego.history_interval_s) + span + to_ns(1.0)
            self.ego = EgoBuffer(
                config.ego.odometry_topic,
                keep_ns=ego_keep,
                max_gap_ns=to_ns(config.ego.max_gap_s),
                max_extrapolation_ns=to_ns(config.ego.max_extrapolation_s),
                drops=self.drops,
            )
        self.time_jumps = 0
        # Messages stamped more than time_jump_s behind their stream's newest, per topic: a time
        # jump once most streams hold some, dropped as stale_stamp when their stream goes on.
        self._behind: dict[str, list[tuple[int, Any]]] = {}
        self._after_jump = False  # until every stream has delivered again since the last jump
        self.ticks_attempted = 0
        self.ticks_assembled = 0
        self.skips: dict[str, int] = {}
        self._last_t0_ns: int | None = None
        self._lock = threading.Lock()
        threads = config.sensing.decode_threads if decode_threads is None else decode_threads
        self.decode_threads = threads or min(len(self.cameras), available_cores())
        self._decoder: ThreadPoolExecutor | None = None  # started at the first tick that needs it

    @property
    def newest_stamp_ns(self) -> int | None:
        """The newest header stamp held on any stream: "now" in the stamps' own time base, which
        is what replay uses for staleness (a bag's receive times may run on another clock)."""
        stamps = [s for s in (*(c.newest_ns for c in self.cameras), self.ego.newest_ns) if s is not None]
        return max(stamps) if stamps else None

    def input_t0_ns(self, include_ego: bool = True) -> int | None:
        """The newest instant covered by every camera (and by odometry), without decoding
        anything: the t0 the next stack would get. The watchdog measures input age against it
        while an inference runs; the inference trigger starts when it advances (cameras only).
        None until every stream has delivered. Takes no lock: the control timer calls it every
        tick and must not wait for an assembly (each stamp is read whole; a reset in between
        at worst gives None or the previous t0, which the next call corrects)."""
        newest = [c.newest_ns for c in self.cameras] + ([self.ego.newest_ns] if include_ego else [])
        return None if any(n is None for n in newest) else min(newest)  # type: ignore[type-var]

    @property
    def topics(self) -> list[str]:
        return [c.topic for c in self.cameras] + [self.ego.topic]

    # -- ingest ---------------------------------------------------------------------------

    def on_message(self, topic: str, msg: Any, now_ns: int | None = None) -> bool:
        """Route a message by topic. Returns True if it was stored. `now_ns`: the receiver's
        clock, against which future stamps are refused (None: no such check, as in replay)."""
        if topic == self.ego.topic:
            return self.on_odometry(msg, now_ns)
        cam = self._by_topic.get(topic)
        if cam is None:
            self.drops.drop("unknown_topic", topic)
            return False
        return self.on_image(cam, msg, now_ns)

    def on_image(self, cam: CameraBuffer, msg: Any, now_ns: int | None = None) -> bool:
        with self._lock:
            cam.stats.received += 1
            return self._ingest(cam, msg, now_ns)

    def on_odometry(self, msg: Any, now_ns: int | None = None) -> bool:
        with self._lock:
            self.ego.received += 1
            return self._ingest(self.ego, msg, now_ns)

    def _streams(self) -> list[CameraBuffer | EgoBuffer | JointStateBuffer]:
        return [*self.cameras, self.ego]

    def _ingest(self, stream: CameraBuffer | EgoBuffer | JointStateBuffer, msg: Any, now_ns: int | None) -> bool:
        """Check a message's stamp against the clock and its stream, then store it."""
        try:
            stamp = stamp_ns(msg)
        except StampError as exc:
            stream.drop("bad_stamp", str(exc))
            return False
        if now_ns is not None and stamp - now_ns > self.future_tolerance_ns:
            stream.drop("future_stamp", f"stamped {(stamp - now_ns) / 1e9:.3f} s ahead of the node's clock")
            return False
        newest = stream.newest_ns
        if newest is not None and newest - stamp > self.time_jump_ns:
            return self._fell_behind(stream, msg, stamp)
        self._settle(stream)
        if newest is None and self._after_jump:
            group = self.newest_stamp_ns
            if group is not None and stamp - group > self.time_jump_ns:
                stream.drop("stale_stamp", f"stamped {(stamp - group) / 1e9:.3f} s after the other streams: from before their time jump")
                return False
        if newest is not None and stamp <= newest:
            if stamp == newest:
                stream.drop("duplicate_stamp", f"stamp {stamp / 1e9:.9f} seen twice")
            else:
                stream.drop("out_of_order", f"stamp {(newest - stamp) / 1e6:.1f} ms older than the newest")
            return False
        stored = stream.add(msg, stamp)
        if self._after_jump and all(s.newest_ns is not None for s in self._streams()):
            self._after_jump = False
        return stored

    def _fell_behind(self, stream: CameraBuffer | EgoBuffer | JointStateBuffer, msg: Any, stamp: int) -> bool:
        """A message far behind its stream: held until most streams agree time went back (then
        a time jump: buffers reset, held messages stored) or its stream goes on (stale_stamp)."""
        held = self._behind.setdefault(stream.topic, [])
        held.append((stamp, msg))
        if len(held) > _MAX_HELD_PER_STREAM:
            held.pop(0)
            stream.drop("stale_stamp", "more messages stamped behind the stream than a time jump takes to agree on")
        with_data = sum(s.newest_ns is not None for s in self._streams())
        agreeing = sum(bool(self._behind.get(s.topic)) for s in self._streams() if s.newest_ns is not None)
        if agreeing < (1 if with_data == 1 else max(2, with_data // 2 + 1)):
            return False
        newest = stream.newest_ns or stamp
        stored = self._time_jump(f"{agreeing} of {with_data} streams", newest - stamp)
        return id(msg) in stored

    def _settle(self, stream: CameraBuffer | EgoBuffer | JointStateBuffer) -> None:
        """Its stream went on in line: the messages held behind it were lone old ones."""
        held = self._behind.pop(stream.topic, None)
        for stamp, _ in held or ():
            stream.drop("stale_stamp", f"stamped {((stream.newest_ns or stamp) - stamp) / 1e9:.3f} s behind the newest"
                                       " while the other streams went on (not a time jump)")

    def clock_moved(self, now_ns: int, previous_ns: int) -> None:
        """The node's clock (/clock with sim time) went from `previous_ns` to `now_ns`: a jump
        back beyond time_jump_s resets the buffers if they still hold input from before it."""
        with self._lock:
            newest = self.newest_stamp_ns
            if previous_ns - now_ns > self.time_jump_ns and newest is not None and newest - now_ns > self.time_jump_ns:
                self._time_jump("/clock", previous_ns - now_ns)

    def _time_jump(self, source: str, back_ns: int) -> set[int]:
        """Reset every buffer, then store the messages held behind their streams (in the new
        time base); returns the ids of those stored."""
        self.time_jumps += 1
        _LOG.warning(
            "time went backwards by %.3f s on %s (bag loop or simulator reset): all sensor buffers reset",
            back_ns / 1e9,
            source,
        )
        held, self._behind = self._behind, {}
        self.reset()
        self._after_jump = True
        stored: set[int] = set()
        for stream in self._streams():
            for stamp, msg in held.get(stream.topic, ()):
                newest = stream.newest_ns
                if newest is None or stamp > newest:
                    if stream.add(msg, stamp):
                        stored.add(id(msg))
                else:
                    stream.drop("out_of_order", "held across a time jump behind a newer message")
        return stored

    def clear_counters(self) -> None:
        """Zero every statistic, keeping the buffered input: a replay that starts part-way
        through a bag warms the buffers up first and counts only what comes after."""
        with self._lock:
            for cam in self.cameras:
                cam.stats = CameraStats()
            self.ego.received = self.ego.accepted = 0
            self.ego.drops = {}
            self.drops.counts.clear()
            self.time_jumps = self.ticks_attempted = self.ticks_assembled = 0
            self.skips = {}

    def reset(self) -> None:
        """Forget all buffered input (statistics are kept)."""
        for cam in self.cameras:
            cam.reset()
        self.ego.reset()
        self._behind = {}
        self._last_t0_ns = None

    # -- assembly -------------------------------------------------------------------------

    def assemble(self, tick_ns: int | None = None) -> FrameStack | StackSkip:
        """A FrameStack at the newest t0 every camera can fill, or the reason it cannot.
        `tick_ns` (the current time) enables the staleness check."""
        with self._lock:
            self.ticks_attempted += 1
            result = self._assemble(tick_ns)
            if isinstance(result, StackSkip):
                self.skips[result.key] = self.skips.get(result.key, 0) + 1
            else:
                self.ticks_assembled += 1
                self._last_t0_ns = result.t0_ns
            return result

    def _assemble(self, tick_ns: int | None) -> FrameStack | StackSkip:
        for cam in self.cameras:
            if cam.newest_ns is None:
                return StackSkip("no_frames", f"no usable message received on {cam.topic}", camera=cam.name)
        oldest_cam = min(self.cameras, key=lambda c: c.newest_ns or 0)
        t0 = oldest_cam.newest_ns
        assert t0 is not None
        if tick_ns is not None and tick_ns - t0 > self.max_t0_age_ns:
            return StackSkip(
                "stale_input", f"newest frame of {oldest_cam.name} is {(tick_ns - t0) / 1e9:.3f} s old", camera=oldest_cam.name
            )
        if self.skip_repeated_t0 and t0 == self._last_t0_ns:
            return StackSkip("no_new_frames", f"t0 {t0 / 1e9:.3f} was already used by the previous stack")
        history, joints = None, None
        try:
            if isinstance(self.ego, JointStateBuffer):
                joints = self.ego.state_at(t0)
            else:
                history = self.ego.history(t0, self.config.ego.history_steps, self.history_interval_ns)
        except StateUnavailable as exc:
            return StackSkip(exc.kind, exc.detail)
        V, F = len(self.cameras), len(self.offsets_ns)
        images = np.empty((V, F, *self.size_hw, 3), dtype=np.uint8)
        stamps = np.empty((V, F), dtype=np.int64)
        # Choose every slot before decoding anything: a tick that will skip costs no decode.
        chosen: list[list[BufferedImage]] = []
        for cam in self.cameras:
            row = []
            for offset in self.offsets_ns:
                entry = cam.nearest(t0 + offset, self.tolerance_ns)
                if entry is None:
                    return self._missing(cam, t0, offset)
                row.append(entry)
            chosen.append(row)
        ready = self._decode_side_by_side(chosen)
        for v, cam in enumerate(self.cameras):
            for f, offset in enumerate(self.offsets_ns):
                entry: BufferedImage | None = chosen[v][f]
                while True:
                    assert entry is not None
                    try:
                        images[v, f] = cam.frame(entry, ready.pop((v, entry.stamp_ns), None))
                        break
                    except DecodeError:
                        # The bad message is gone from the buffer; another may fill the slot.
                        entry = cam.nearest(t0 + offset, self.tolerance_ns)
                        if entry is None:
                            return self._missing(cam, t0, offset, "the frame chosen for it failed to decode")
                stamps[v, f] = entry.stamp_ns
        target = t0 + np.asarray(self.offsets_ns, dtype=np.int64)
        return FrameStack(
            t0_ns=t0,
            camera_names=tuple(c.name for c in self.cameras),
            offsets_s=self.config.frames.offsets_s,
            images=images,
            stamps_ns=stamps,
            history=history,
            joint_state=joints,
            slot_error_ms=(stamps - target[None, :]) / 1e6,
            tick_ns=tick_ns,
        )

    def _decode_side_by_side(self, chosen: list[list[BufferedImage]]) -> dict[tuple[int, int], np.ndarray]:
        """Decode the frames of this tick that no cache holds yet in parallel threads:
        {(camera index, stamp): pixels} for the fill loop, which stores and counts them as if it
        had decoded them itself. A frame that fails here is left out; the fill loop decodes it
        again and removes, counts and replaces it as usual."""
        todo = [(v, cam, entry) for v, (cam, row) in enumerate(zip(self.cameras, chosen))
                for entry in {e.stamp_ns: e for e in row}.values() if not cam.is_decoded(entry)]
        if self.decode_threads < 2 or len(todo) < 2:
            return {}
        try:
            if self._decoder is None:
                self._decoder = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="vla_ros-decode")
            jobs = [(v, entry, self._decoder.submit(cam.decode_or_none, entry)) for v, cam, entry in todo]
        except RuntimeError as exc:  # no thread could be started (process limit, shutting down)
            _LOG.warning("cannot start decoding threads (%s): decoding one frame after the other from now on", exc)
            self.decode_threads = 1
            return {}
        ready: dict[tuple[int, int], np.ndarray] = {}
        for v, entry, job in jobs:
            pixels = job.result()  # None for a frame that failed (no exception crosses threads)
            if pixels is not None:
                ready[(v, entry.stamp_ns)] = pixels
        return ready

    def close(self) -> None:
        """Stop the decoding threads (a later tick starts them again)."""
        with self._lock:
            if self._decoder is not None:
                self._decoder.shutdown(wait=True)
                self._decoder = None

    def _missing(self, cam: CameraBuffer, t0: int, offset: int, why: str = "") -> StackSkip:
        detail = why or f"no message within {self.tolerance_ns / 1e6:.0f} ms of t0{offset / 1e9:+.2f} s ({len(cam)} buffered)"
        return StackSkip("missing_frame", detail, camera=cam.name, offset_s=offset / 1e9)

    # -- statistics -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters for reports and diagnostics (plain JSON types)."""
        with self._lock:
            return {
                "ticks_attempted": self.ticks_attempted,
                "ticks_assembled": self.ticks_assembled,
                "ticks_skipped": sum(self.skips.values()),
                "skipped_by_reason": dict(sorted(self.skips.items())),
                "time_jumps": self.time_jumps,
                "cameras": {c.name: {"topic": c.topic, **asdict(c.stats)} for c in self.cameras},
                "ego": {"topic": self.ego.topic, "received": self.ego.received, "accepted": self.ego.accepted, "drops": dict(self.ego.drops)},
                "drops": self.drops.as_dict(),
            }
