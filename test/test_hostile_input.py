"""Hostile input through the real sensing pipeline: every fault kind is counted under its reason,
memory stays bounded (tracemalloc and RSS, with the garbage collector off, so nothing may wait
in a reference cycle), size bombs are refused before any pixel is allocated, and stamps that
are far ahead or behind are dropped while a real time jump still resets the buffers."""
from __future__ import annotations

import gc
import tracemalloc
from collections import deque

import numpy as np
import psutil
import pytest

import hostile
from vla_ros.config import config_from_dict
from vla_ros.replay.pattern_bag import pattern_image
from vla_ros.ros import messages
from vla_ros.sensors.frame_stack import FrameStack
from vla_ros.sensors.image_decode import MAX_IMAGE_SIDE, DecodeError, check_raw, decode_compressed, image_size_bound
from vla_ros.sensors.pipeline import SensingPipeline

H, W = 64, 96
CAMERAS = [
    {"name": "front", "topic": "/cam/front/compressed"},
    {"name": "left", "topic": "/cam/left/compressed"},
    {"name": "rear", "topic": "/cam/rear/image_raw"},
]
ODOM = "/ego/odom"
MS = 1_000_000
START = 10**12


def _config(**sensing):
    return config_from_dict({"image": {"height": H, "width": W}, "cameras": CAMERAS, "ego": {"odometry_topic": ODOM},
                             "sensing": sensing})


class Stream:
    """Cameras at 10 Hz and odometry at 50 Hz, stamped on a simulated clock; each tick of
    100 ms delivers one message per camera (or a fault in its place) and then assembles."""

    def __init__(self, pipeline: SensingPipeline) -> None:
        self.p = pipeline
        self.t = START
        self.k = 0
        self.jpegs = [messages.encode_jpeg(pattern_image(v, f, H, W)) for v in range(2) for f in range(4)]
        self.raw = [pattern_image(2, f, H, W) for f in range(4)]
        self.results: deque = deque(maxlen=64)

    def tick(self, replace: dict[str, list] | None = None, odom_fault=None) -> None:
        """100 ms of input: `replace` {topic: messages} goes out instead of that camera's frame,
        `odom_fault` instead of the last odometry sample."""
        replace = replace or {}
        for i in range(5):
            stamp = self.t + i * 20 * MS
            msg = odom_fault if (odom_fault is not None and i == 4) else messages.odometry(stamp, [0.8 * stamp / 1e9, 0, 0], [0, 0, 0, 1])
            self.p.on_message(ODOM, msg, now_ns=stamp)
        stamp = self.t + 100 * MS
        for v, cam in enumerate(CAMERAS):
            if cam["topic"] in replace:
                msgs = replace[cam["topic"]]
            elif v < 2:
                msgs = [messages.compressed_image(stamp, cam["name"], self.jpegs[v * 4 + self.k % 4])]
            else:
                msgs = [messages.raw_image(stamp, cam["name"], self.raw[self.k % 4], "rgb8")]
            for m in msgs:
                self.p.on_message(cam["topic"], m, now_ns=stamp)
        self.t += 100 * MS
        self.k += 1
        self.results.append(self.p.assemble(self.t))

    def next_stamp(self) -> int:
        return self.t + 100 * MS


def _counter(p: SensingPipeline, topic: str, name: str) -> int:
    stats = p.stats()
    for cam in stats["cameras"].values():
        if cam["topic"] == topic:
            return cam["drops"].get(name, 0) if name not in cam else cam[name]
    return stats["ego"]["drops"].get(name, 0)


def _faults():
    """(topic, kind, counter, builder(stream) -> tick kwargs, expected count) for every fault kind."""
    out = []
    for kind, counter in hostile.CAMERA_FAULTS.items():
        topic = CAMERAS[0]["topic"]
        n = hostile.BURST - 64 if kind == "burst" else 1
        out.append((topic, kind, counter, lambda s, k=kind, t=topic: {"replace": {t: hostile.camera_fault(k, s.next_stamp(), "front", s.jpegs[0])}}, n))
    for kind, counter in hostile.RAW_CAMERA_FAULTS.items():
        topic = CAMERAS[2]["topic"]
        out.append((topic, kind, counter, lambda s, k=kind, t=topic: {"replace": {t: hostile.raw_camera_fault(k, s.next_stamp(), "rear", s.raw[0])}}, 1))
    for kind, counter in hostile.ODOMETRY_FAULTS.items():
        out.append((ODOM, kind, counter, lambda s, k=kind: {"odom_fault": hostile.odometry_fault(k, s.t + 80 * MS)}, 1))
    return out


@pytest.mark.parametrize("threads", [1, 3])
def test_every_fault_kind_is_counted_under_its_reason_and_assembly_recovers(threads):
    p = SensingPipeline(_config(), decode_threads=threads)
    s = Stream(p)
    for _ in range(20):
        s.tick()
    assert isinstance(s.results[-1], FrameStack)
    for topic, kind, counter, build, expected in _faults():
        before = _counter(p, topic, counter)
        s.tick(**build(s))
        for _ in range(6):  # the stream goes on (a stale stamp is counted then); stacks come back
            s.tick()
        grown = _counter(p, topic, counter) - before
        assert grown == expected or (kind == "burst" and grown >= expected), (topic, kind, counter, grown)
        assert isinstance(s.results[-1], FrameStack), (kind, s.results[-1])
    stats = p.stats()
    assert stats["time_jumps"] == 0  # no single stream's old stamps reset anything
    # nothing of the faults made it into a stack: every slot holds a good pattern frame
    for r in s.results:
        if isinstance(r, FrameStack):
            assert r.images.shape == (3, 4, H, W, 3)


def test_memory_stays_bounded_under_every_fault_with_the_garbage_collector_off():
    p = SensingPipeline(_config(), decode_threads=3)
    s = Stream(p)
    faults = _faults()

    def round_of_faults():
        for _, _, _, build, _ in faults:
            s.tick(**build(s))
            s.tick()

    for _ in range(20):
        s.tick()
    round_of_faults()  # warm-up: caches, threads, first-time log records
    s.results = deque(maxlen=1)
    proc = psutil.Process()
    gc.collect()
    gc.disable()
    try:
        tracemalloc.start()
        base_traced = tracemalloc.get_traced_memory()[0]
        base_rss = proc.memory_info().rss
        for _ in range(5):
            round_of_faults()
        traced, peak = tracemalloc.get_traced_memory()
        rss = proc.memory_info().rss
        tracemalloc.stop()
        # without the collector, a failed decode held in a reference cycle would stay here
        assert traced - base_traced < 2 * 2**20, f"traced memory grew {(traced - base_traced) / 2**20:.1f} MiB"
        assert peak - base_traced < 16 * 2**20, f"traced peak {(peak - base_traced) / 2**20:.1f} MiB above the baseline"
        # Pillow's pixel buffers are not traced: RSS would grow by 183 MiB for one decoded bomb
        assert rss - base_rss < 16 * 2**20, f"RSS grew {(rss - base_rss) / 2**20:.1f} MiB"
    finally:
        gc.enable()
    stats = p.stats()
    for reason in ("too_large", "corrupt", "future_stamp", "stale_stamp", "bad_pose", "unsupported_encoding", "wrong_size", "empty"):
        assert stats["drops"][reason] >= 6, reason
    assert all(len(c) <= 64 for c in p.cameras)


def test_a_failed_decode_leaves_nothing_for_the_garbage_collector():
    p = SensingPipeline(_config(), decode_threads=3)
    s = Stream(p)
    for _ in range(20):
        s.tick()
    gc.collect()
    gc.disable()
    try:
        for _ in range(10):
            bad = hostile.truncated_jpeg(s.jpegs[0])
            stamp = s.next_stamp()
            s.tick(replace={c["topic"]: [messages.compressed_image(stamp, c["name"], bad)] for c in CAMERAS[:2]})
            for _ in range(5):  # until the hole it leaves has passed every slot
                s.tick()
        assert p.stats()["cameras"]["front"]["decode_errors"] == 10
        assert gc.collect() == 0  # no cycle was built by the failures
    finally:
        gc.enable()


def test_declared_size_is_checked_before_decoding():
    bound = image_size_bound((320, 576))
    assert bound == (1280, 2304)  # 4x the model input per side
    assert image_size_bound((320, 576), max_width=8192, max_height=8192) == (8192, 8192)
    assert image_size_bound((4000, 4000)) == (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE)  # never above 8192
    for data in (hostile.png_bomb(), hostile.jpeg_bomb()):
        assert len(data) < 1000
        with pytest.raises(DecodeError) as err:
            decode_compressed("", data, (320, 576), bound)
        assert err.value.kind == "too_large" and "8000x8000" in err.value.detail
    with pytest.raises(DecodeError) as err:
        check_raw("rgb8", 8000, 8000, 24000, 12, bound)
    assert err.value.kind == "too_large"
    # an image of 1920x1080 is within the default bound for the default model input
    ok = messages.encode_jpeg(np.zeros((1080, 1920, 3), dtype=np.uint8))
    assert decode_compressed("jpeg", ok, (320, 576), bound).shape == (320, 576, 3)


def test_default_bound_follows_the_configured_image_size_not_a_smaller_model():
    cfg = config_from_dict({"image": {"height": 320, "width": 576}})
    assert SensingPipeline(cfg, image_size_hw=(64, 128)).max_image_hw == (1280, 2304)
    assert SensingPipeline(cfg, image_size_hw=(448, 448)).max_image_hw == (1792, 2304)


def test_configured_bound_refuses_larger_images_as_counted_drops():
    p = SensingPipeline(_config(max_image_width=128, max_image_height=128), decode_threads=1)
    big = messages.encode_jpeg(pattern_image(0, 0, 160, 96))
    assert not p.on_message("/cam/front/compressed", messages.compressed_image(START, "front", big), now_ns=START)
    assert p.stats()["cameras"]["front"]["drops"] == {"too_large": 1}
    with pytest.raises(Exception, match="max_image_width"):
        _config(max_image_width=9000)


def test_future_stamp_is_dropped_and_never_becomes_the_newest():
    p = SensingPipeline(_config(future_tolerance_s=0.5), decode_threads=1)
    s = Stream(p)
    for _ in range(20):
        s.tick()
    newest = p.cameras[0].newest_ns
    far = messages.compressed_image(s.t + 600 * MS, "front", s.jpegs[0])
    assert not p.on_message(CAMERAS[0]["topic"], far, now_ns=s.t)
    assert p.cameras[0].newest_ns == newest
    assert p.stats()["drops"]["future_stamp"] == 1
    near = messages.compressed_image(s.t + 400 * MS, "front", s.jpegs[0])  # within the tolerance
    assert p.on_message(CAMERAS[0]["topic"], near, now_ns=s.t)
    # replay (no clock given) does not judge stamps against a clock
    assert p.on_message(CAMERAS[1]["topic"], messages.compressed_image(s.t + hostile.HOUR_NS, "left", s.jpegs[4]))


def test_one_old_frame_is_a_stale_drop_not_a_time_jump():
    p = SensingPipeline(_config(), decode_threads=1)
    s = Stream(p)
    for _ in range(20):
        s.tick()
    buffered = len(p.cameras[0])
    old = messages.compressed_image(s.t - 3_000 * MS, "front", s.jpegs[0])
    assert not p.on_message(CAMERAS[0]["topic"], old, now_ns=s.t)
    assert len(p.cameras[0]) == buffered  # nothing was wiped
    s.tick()
    assert isinstance(s.results[-1], FrameStack)  # the next tick has its stack: no gap in outputs
    stats = p.stats()
    assert stats["time_jumps"] == 0
    assert stats["cameras"]["front"]["drops"] == {"stale_stamp": 1}


def test_time_jump_when_most_streams_go_back_together_loses_no_message():
    p = SensingPipeline(_config(), decode_threads=1)
    s = Stream(p)
    for _ in range(30):
        s.tick()
    s.t = START - 100 * MS  # every stream starts over (a bag loop, a simulator reset)
    s.k = 0
    for _ in range(25):
        s.tick()
    stats = p.stats()
    assert stats["time_jumps"] == 1
    assert stats["drops"] == {}  # every message after the jump was kept
    assert all(c["accepted"] == c["received"] for c in stats["cameras"].values())
    # the stacks after the jump are those of a node started at the jump
    fresh = Stream(SensingPipeline(_config(), decode_threads=1))
    fresh.t = START - 100 * MS
    for _ in range(25):
        fresh.tick()
    after = [r.t0_ns if isinstance(r, FrameStack) else r.key for r in list(s.results)[30:]]
    assert after == [r.t0_ns if isinstance(r, FrameStack) else r.key for r in fresh.results]
    assert isinstance(s.results[-1], FrameStack)


def test_clock_going_back_resets_the_buffers_once():
    p = SensingPipeline(_config(), decode_threads=1)
    s = Stream(p)
    for _ in range(30):
        s.tick()
    p.clock_moved(START, s.t)  # /clock back to the start
    assert p.stats()["time_jumps"] == 1 and all(len(c) == 0 for c in p.cameras)
    s.t = START - 100 * MS
    for _ in range(25):
        s.tick()
    p.clock_moved(s.t, s.t + 50 * MS)  # a small step back is no jump
    stats = p.stats()
    assert stats["time_jumps"] == 1
    assert isinstance(s.results[-1], FrameStack)


def test_stragglers_from_before_a_jump_are_stale_drops():
    p = SensingPipeline(_config(), decode_threads=1)
    s = Stream(p)
    for _ in range(30):
        s.tick()
    late = s.t
    p.clock_moved(START, s.t)  # /clock went back: buffers reset
    for v in (0, 1):
        assert p.on_message(CAMERAS[v]["topic"], messages.compressed_image(START, CAMERAS[v]["name"], s.jpegs[0]), now_ns=START)
    assert p.on_message(ODOM, messages.odometry(START, [0, 0, 0], [0, 0, 0, 1]), now_ns=START)
    # the raw camera has sent nothing since; one more frame of the old time arrives late
    assert not p.on_message(CAMERAS[2]["topic"], messages.raw_image(late + 100 * MS, "rear", s.raw[0], "rgb8"))
    assert p.stats()["cameras"]["rear"]["drops"] == {"stale_stamp": 1}
    assert p.on_message(CAMERAS[2]["topic"], messages.raw_image(START + 2 * MS, "rear", s.raw[0], "rgb8"))
