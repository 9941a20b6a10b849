"""The sensing pipeline on real bags: the right frame lands in the right slot, ego history is
exact, and every kind of bad input is counted and dropped without stopping assembly."""
import numpy as np
import pytest

from bagtools import identities, replay, small_config, stacks_of
from vla_ros.ros import messages
from vla_ros.replay.bag_io import BagWriter
from vla_ros.replay.pattern_bag import ArcMotion, PatternBagSpec, pattern_image, write_pattern_bag
from vla_ros.sensors.frame_stack import FrameStack, StackSkip
from vla_ros.sensors.geometry import yaw_to_quat

SPEC = PatternBagSpec(duration_s=3.0, height=64, width=96, motion=ArcMotion(speed=8.0, yaw_rate=0.3))


@pytest.mark.parametrize("fmt", ["mcap", "sqlite3"])
def test_every_slot_holds_the_right_camera_and_frame(tmp_path, fmt):
    cfg = small_config()
    write_pattern_bag(tmp_path / "bag", cfg, SPEC, fmt=fmt)
    pipeline, results = replay(tmp_path / "bag", cfg)
    stacks = stacks_of(results)
    assert len(stacks) >= 10
    for stack in stacks:
        ids = identities(stack)
        newest = int(round((stack.t0 - SPEC.start_s) * SPEC.camera_hz))
        assert (ids[:, :, 0] == np.arange(4)[:, None]).all()  # camera-major, config order
        assert (ids[:, :, 1] == newest + np.array([-3, -2, -1, 0])[None, :]).all()  # oldest -> newest
        expected = SPEC.start_s + ids[:, :, 1] / SPEC.camera_hz + np.arange(4)[:, None] * SPEC.camera_skew_s
        np.testing.assert_allclose(stack.stamps, expected, atol=1e-9)
        assert stack.images.shape == (4, 4, 64, 96, 3) and stack.images.dtype == np.uint8
    # t0 is the newest instant at which every camera has a frame: the minimum over cameras of
    # their newest stamps at the tick, never later than the tick itself.
    for tick_ns, r in results:
        if isinstance(r, FrameStack):
            assert r.t0_ns <= tick_ns
            assert r.t0_ns in r.stamps_ns[:, -1]  # the camera that defines t0 fills its slot exactly
            assert np.abs(r.slot_error_ms).max() <= 40


@pytest.mark.parametrize("threads", [1, 4])
def test_decoded_frames_are_reused_between_ticks(tmp_path, threads):
    cfg = small_config()
    write_pattern_bag(tmp_path / "bag", cfg, SPEC)
    pipeline, results = replay(tmp_path / "bag", cfg, decode_threads=threads)
    n = len(stacks_of(results))
    for cam in pipeline.stats()["cameras"].values():
        # each tick needs one new frame per camera; only the first needs all four
        assert cam["decoded"] == n + 3
        assert cam["decode_cache_hits"] == 3 * (n - 1)


def test_frames_decoded_side_by_side_equal_those_decoded_one_by_one(tmp_path):
    cfg = small_config()
    write_pattern_bag(tmp_path / "bag", cfg, SPEC)
    one, r1 = replay(tmp_path / "bag", cfg, decode_threads=1)
    four, r4 = replay(tmp_path / "bag", cfg, decode_threads=4)
    assert four.decode_threads == 4 and four._decoder is not None  # the threads really ran
    assert [t for t, _ in r1] == [t for t, _ in r4]
    for (_, a), (_, b) in zip(r1, r4):
        assert type(a) is type(b)
        if isinstance(a, FrameStack):
            assert np.array_equal(a.images, b.images) and np.array_equal(a.stamps_ns, b.stamps_ns)
    assert one.stats() == four.stats()
    four.close()
    assert four._decoder is None


def test_ego_history_is_the_arc_in_the_t0_frame(tmp_path):
    cfg = small_config()
    write_pattern_bag(tmp_path / "bag", cfg, SPEC)
    pipeline, results = replay(tmp_path / "bag", cfg)
    # the newest odometry, parsed once on receipt, is also the state the controller gets
    state = pipeline.ego.newest()
    assert state.stamp_ns == pipeline.ego.newest_ns
    p, yaw = SPEC.motion.pose(state.stamp_ns / 1e9 - SPEC.start_s)
    np.testing.assert_allclose(state.xyz, p, atol=1e-9)
    assert np.angle(np.exp(1j * (state.yaw - yaw))) == pytest.approx(0.0, abs=1e-9)
    assert state.speed == SPEC.motion.speed
    stack = stacks_of(results)[-1]
    t0 = stack.t0 - SPEC.start_s
    p0, yaw0 = SPEC.motion.pose(t0)
    c, s = np.cos(yaw0), np.sin(yaw0)
    r0 = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    for i, dt in enumerate(stack.history.times_s):
        p, yaw = SPEC.motion.pose(t0 + dt)
        np.testing.assert_allclose(stack.history_xyz[i], r0.T @ (p - p0), atol=2e-3)
        d = yaw - yaw0
        np.testing.assert_allclose(stack.history_rot[i], [[np.cos(d), -np.sin(d), 0], [np.sin(d), np.cos(d), 0], [0, 0, 1]], atol=1e-4)
    np.testing.assert_allclose(stack.history.times_s, np.arange(-1.5, 0.01, 0.1), atol=1e-9)
    np.testing.assert_allclose(stack.history_xyz[-1], 0, atol=1e-12)
    # Driving forward on a left-turning circle: the past lies behind (x < 0) and, since the circle
    # bends towards its centre on both sides, also to the left (y > 0).
    assert stack.history_xyz[0, 0] < -10 and stack.history_xyz[0, 1] > 1


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_raw_image_topics(tmp_path, encoding):
    cams = [{"name": f"c{i}", "topic": f"/c{i}/image_raw"} for i in range(2)]
    cfg = small_config(cameras=cams)
    spec = PatternBagSpec(duration_s=2.0, height=48, width=80, raw_encoding=encoding)
    write_pattern_bag(tmp_path / "bag", cfg, spec)
    _, results = replay(tmp_path / "bag", cfg)
    stack = stacks_of(results)[-1]
    ids = identities(stack)
    assert (ids[:, :, 0] == [[0], [1]]).all()
    tag = stack.images[0, -1, -6:, :4].reshape(-1, 3).mean(axis=0)
    if encoding != "mono8":
        assert tag[0] > tag[2] + 100  # colours not swapped


def test_png_topics(tmp_path):
    cfg = small_config()
    write_pattern_bag(tmp_path / "bag", cfg, PatternBagSpec(duration_s=2.0, height=64, width=96, compressed_format="png"))
    _, results = replay(tmp_path / "bag", cfg)
    assert (identities(stacks_of(results)[-1])[:, :, 0] == np.arange(4)[:, None]).all()


def test_a_dropped_frame_skips_exactly_the_ticks_that_need_it(tmp_path):
    cfg = small_config()
    missing = 20  # front_wide (camera 1) frame 20
    write_pattern_bag(tmp_path / "bag", cfg, SPEC, keep=lambda v, k: not (v == 1 and k == missing))
    pipeline, results = replay(tmp_path / "bag", cfg)
    skips = [r for _, r in results if isinstance(r, StackSkip) and r.reason != "ego_history_short"]
    # front_wide defines t0 in this bag (its newest frame is the oldest "newest"); without frame 20
    # its newest stays at 19 for one tick (no new t0), then the next three stacks need frame 20 in
    # the -0.1, -0.2 and -0.3 s slots.
    assert sorted(s.key for s in skips) == [
        "missing_frame/front_wide/-0.10s",
        "missing_frame/front_wide/-0.20s",
        "missing_frame/front_wide/-0.30s",
        "no_frames/front_wide",  # the first tick, before front_wide's first frame arrived
        "no_new_frames",
    ]
    for stack in stacks_of(results):
        assert missing not in identities(stack)[1, :, 1]


def _write(path, cfg, events):
    with BagWriter(path) as bag:
        for stamp, topic, msg in sorted(events, key=lambda e: e[0]):
            bag.write(topic, msg, stamp)


def _odom_events(cfg, t_start, t_end, hz=50.0, start_ns=10**12):
    out = []
    for k in range(int((t_end - t_start) * hz) + 1):
        t = t_start + k / hz
        stamp = start_ns + round(t * 1e9)
        out.append((stamp, cfg.ego.odometry_topic, messages.odometry(stamp, [5.0 * t, 0, 0], yaw_to_quat(0.0))))
    return out


def _camera_events(cfg, t_start, t_end, hz=10.0, start_ns=10**12, corrupt=(), base_frame=0):
    out = []
    for v, cam in enumerate(cfg.cameras):
        for k in range(int(round((t_end - t_start) * hz)) + 1):
            t = t_start + k / hz
            stamp = start_ns + round(t * 1e9)
            frame = base_frame + k
            data = messages.encode_jpeg(pattern_image(v, frame, 64, 96))
            if (v, frame) in corrupt:
                data = data[: len(data) * 2 // 3]  # header intact: fails when decoded, not on receipt
            out.append((stamp, cam.topic, messages.compressed_image(stamp, cam.name, data)))
    return out


@pytest.mark.parametrize("threads", [1, 4])
def test_corrupt_jpeg_is_counted_and_assembly_continues(tmp_path, threads):
    cfg = small_config()
    events = _odom_events(cfg, 0, 4) + _camera_events(cfg, 0, 4, corrupt={(2, 25)})
    _write(tmp_path / "bag", cfg, events)
    pipeline, results = replay(tmp_path / "bag", cfg, decode_threads=threads)
    stats = pipeline.stats()
    assert stats["cameras"]["cross_right"]["decode_errors"] == 1
    assert stats["cameras"]["cross_right"]["drops"] == {"corrupt": 1}
    assert stats["drops"]["corrupt"] == 1
    skipped = [r for _, r in results if isinstance(r, StackSkip) and r.reason == "missing_frame"]
    assert skipped and all(s.camera == "cross_right" for s in skipped)
    assert all(25 not in identities(s)[2, :, 1] for s in stacks_of(results))
    # the stacks after the corrupt frame left the window are complete again
    assert identities(stacks_of(results)[-1])[2, -1, 1] == 40


def test_wrong_size_raw_image_nan_pose_bad_stamps_are_dropped(tmp_path):
    cams = [{"name": "cam", "topic": "/cam/image_raw"}]
    cfg = small_config(cameras=cams)
    start = 10**12
    events = _odom_events(cfg, 0, 3, start_ns=start)
    for k in range(31):
        stamp = start + k * 100_000_000
        img = messages.raw_image(stamp, "cam", pattern_image(0, k, 64, 96), "rgb8")
        if k == 12:
            img.data = img.data[:-5]  # wrong size
        if k == 13:
            img.encoding = "16UC1"
        events.append((stamp, "/cam/image_raw", img))
    nan = messages.odometry(start + 1_010_000_000, [float("nan"), 0, 0], [0, 0, 0, 1])
    zero = messages.odometry(start + 1_030_000_000, [1, 0, 0], [0, 0, 0, 1])
    zero.header.stamp.sec, zero.header.stamp.nanosec = 0, 0
    late = messages.odometry(start + 1_000_000_000, [1, 0, 0], [0, 0, 0, 1])  # arrives after newer poses
    events += [(start + 1_010_000_000, cfg.ego.odometry_topic, nan), (start + 1_030_000_000, cfg.ego.odometry_topic, zero)]
    _write(tmp_path / "bag", cfg, events)
    # out-of-order: append the stale pose at a later log time
    with BagWriter(tmp_path / "bag2") as bag:
        for stamp, topic, msg in sorted(events, key=lambda e: e[0]):
            bag.write(topic, msg, stamp)
            if stamp == start + 1_500_000_000 and topic == cfg.ego.odometry_topic:
                bag.write(topic, late, stamp + 1)
    pipeline, results = replay(tmp_path / "bag2", cfg)
    stats = pipeline.stats()
    assert stats["cameras"]["cam"]["drops"] == {"wrong_size": 1, "unsupported_encoding": 1}
    assert stats["ego"]["drops"] == {"bad_pose": 1, "bad_stamp": 1, "out_of_order": 1}
    assert stats["ticks_assembled"] > 5
    assert stats["time_jumps"] == 0


def test_time_going_backwards_resets_buffers_and_assembly_resumes(tmp_path):
    cfg = small_config()
    start = 10**12
    first = _odom_events(cfg, 0, 3, start_ns=start) + _camera_events(cfg, 0, 3, start_ns=start)
    # a bag loop: header stamps restart 3 s earlier while receive time keeps going
    second = _odom_events(cfg, 0, 3, start_ns=start) + _camera_events(cfg, 0, 3, start_ns=start, base_frame=100)
    with BagWriter(tmp_path / "bag") as bag:
        for stamp, topic, msg in sorted(first, key=lambda e: e[0]):
            bag.write(topic, msg, stamp)
        for stamp, topic, msg in sorted(second, key=lambda e: e[0]):
            bag.write(topic, msg, stamp + 3_500_000_000)
    pipeline, results = replay(tmp_path / "bag", cfg, rate_hz=10.0)
    assert pipeline.stats()["time_jumps"] == 1
    stacks = stacks_of(results)
    frames = [identities(s)[0, -1, 1] for s in stacks]
    assert any(f < 100 for f in frames) and any(f >= 100 for f in frames)
    # after the jump, no stack mixes frames from before and after it
    for s in stacks:
        ids = identities(s)[:, :, 1]
        assert (ids < 100).all() or (ids >= 100).all()


def test_stale_camera_skips_with_the_camera_named(tmp_path):
    cfg = small_config()
    events = _odom_events(cfg, 0, 4) + [e for e in _camera_events(cfg, 0, 4) if not (e[1] == cfg.cameras[3].topic and e[0] > 10**12 + 2_050_000_000)]
    _write(tmp_path / "bag", cfg, events)
    pipeline, results = replay(tmp_path / "bag", cfg)
    stale = pipeline.stats()["skipped_by_reason"].get("stale_input/front_tele", 0)
    assert stale >= 10
    late = [r for t, r in results if t > 10**12 + 2_700_000_000]
    assert late and all(isinstance(r, StackSkip) and r.key == "stale_input/front_tele" for r in late)


def test_undeserializable_record_is_counted(tmp_path):
    cfg = small_config()
    events = _odom_events(cfg, 0, 3) + _camera_events(cfg, 0, 3)
    with BagWriter(tmp_path / "bag") as bag:
        for stamp, topic, msg in sorted(events, key=lambda e: e[0]):
            bag.write(topic, msg, stamp)
            if topic == cfg.cameras[0].topic and stamp == 10**12 + 1_000_000_000:
                bag.write_raw(topic, "sensor_msgs/msg/CompressedImage", b"\x00\x01\x00\x00\xff", stamp + 1)
    pipeline, results = replay(tmp_path / "bag", cfg)
    assert pipeline.stats()["drops"]["deserialize_error"] == 1
    assert pipeline.stats()["ticks_assembled"] >= 10
