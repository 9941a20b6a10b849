"""The procedural driving world: real bags written to tmp_path and read back with rosbags."""
from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rosbags.highlevel import AnyReader

from vla_ros.cli import main
from vla_ros.config import load_config
from vla_ros.replay.bag_io import TYPESTORE, bag_info, read_messages
from vla_ros.sim.camera import RIG, rotation
from vla_ros.sim.record import GROUND_TRUTH_TOPIC, RecordSpec, camera_info_topic, record

W, H = 192, 96  # small but valid (multiples of 8)
DURATION = 2.0
CFG = load_config(None)
CAM_TOPICS = [c.topic for c in CFG.cameras]
INFO_TOPICS = [camera_info_topic(c) for c in CFG.cameras]

# The grammar of labels.py as a regular expression.
_CAUSE = (
    r"(?:(?:sharp )?(?:left|right) curve ahead|road straightens ahead"
    r"|lead vehicle (?:stopped|braking|slower|moving off|speeding up|ahead)"
    r"|vehicle cutting in from the left|speed limit (?:drops|rises) to \d+|road clear)"
)
SENTENCE = re.compile(
    rf"^{_CAUSE}(?: and {_CAUSE})?; (?:stop|slow down|speed up|follow the lead vehicle|keep speed) and keep lane\.$",
    re.IGNORECASE,
)


def _record(path: Path, **kw) -> dict[str, int]:
    spec = RecordSpec(**{"seed": 7, "duration_s": DURATION, "width": W, "height": H, **kw})
    fmt = kw.pop("fmt", "mcap") if "fmt" in kw else "mcap"
    return record(path, CFG, spec, fmt=fmt)


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "drive"
    record(path, CFG, RecordSpec(seed=7, duration_s=DURATION, width=W, height=H, scenario="cut_in"))
    return path


def _raw(path: Path) -> list[tuple[str, int, bytes]]:
    with AnyReader([path], default_typestore=TYPESTORE) as reader:
        return [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]


def test_topics_types_and_rates(bag: Path) -> None:
    info = bag_info(bag)
    n_cam = int(DURATION * 10) + 1
    expected = {t: ("sensor_msgs/msg/CompressedImage", n_cam) for t in CAM_TOPICS}
    expected |= {t: ("sensor_msgs/msg/CameraInfo", n_cam) for t in INFO_TOPICS}
    expected[CFG.ego.odometry_topic] = ("nav_msgs/msg/Odometry", int(DURATION * 50) + 1)
    expected[GROUND_TRUTH_TOPIC] = ("std_msgs/msg/String", int(DURATION * 10) + 1)
    expected["/tf_static"] = ("tf2_msgs/msg/TFMessage", 1)
    expected["/tf"] = ("tf2_msgs/msg/TFMessage", int(DURATION * 50) + 1)  # odom -> base_link with each odometry message
    assert {t: (info.topic_types[t], info.message_counts[t]) for t in info.topic_types} == expected
    assert info.start_ns == 1000 * 10**9  # fixed sim epoch
    assert info.duration_s == pytest.approx(DURATION)
    # Rates from the stamps; header stamp == log time everywhere.
    stamps: dict[str, list[int]] = {}
    for m in read_messages(bag):
        if m.topic == GROUND_TRUTH_TOPIC:
            stamps.setdefault(m.topic, []).append(json.loads(m.msg.data)["stamp_ns"])
        elif m.topic == "/tf":
            st = m.msg.transforms[0].header.stamp
            assert st.sec * 10**9 + st.nanosec == m.log_time_ns
        elif m.topic != "/tf_static":
            st = m.msg.header.stamp
            assert st.sec * 10**9 + st.nanosec == m.log_time_ns
            stamps.setdefault(m.topic, []).append(m.log_time_ns)
    assert np.all(np.diff(stamps[CFG.ego.odometry_topic]) == 20_000_000)
    assert np.all(np.diff(stamps[GROUND_TRUTH_TOPIC]) == 100_000_000)
    for t in CAM_TOPICS + INFO_TOPICS:
        assert np.all(np.diff(stamps[t]) == 100_000_000)


def test_messages_are_valid(bag: Path) -> None:
    seen_info: dict[str, object] = {}
    odom = []
    for m in read_messages(bag):
        if m.topic in CAM_TOPICS:
            name = CFG.cameras[CAM_TOPICS.index(m.topic)].name
            assert m.msg.header.frame_id == f"{name}_optical" and m.msg.format == "jpeg"
            img = Image.open(io.BytesIO(m.msg.data.tobytes()))
            assert img.format == "JPEG" and img.size == (W, H) and img.mode == "RGB"
        elif m.topic in INFO_TOPICS:
            name = CFG.cameras[INFO_TOPICS.index(m.topic)].name
            seen_info[name] = m.msg
        elif m.topic == CFG.ego.odometry_topic:
            odom.append(m.msg)
        elif m.topic == "/tf_static":
            tfs = m.msg.transforms
            assert len(tfs) == 4
            assert {t.child_frame_id for t in tfs} == {f"{c.name}_optical" for c in CFG.cameras}
            for t in tfs:
                assert t.header.frame_id == "base_link"
                q = t.transform.rotation
                assert math.isclose(q.x**2 + q.y**2 + q.z**2 + q.w**2, 1.0, abs_tol=1e-9)
                spec = RIG[t.child_frame_id.removesuffix("_optical")]
                assert (t.transform.translation.x, t.transform.translation.y, t.transform.translation.z) == pytest.approx(spec.xyz)
                # The optical z axis (viewing direction) points where the camera's yaw says.
                from vla_ros.sensors.geometry import quat_to_matrix

                z_axis = quat_to_matrix(np.array([q.x, q.y, q.z, q.w]))[:, 2]
                assert math.degrees(math.atan2(z_axis[1], z_axis[0])) == pytest.approx(spec.yaw_deg, abs=1e-6)
                assert z_axis[2] < 0  # pitched down
                assert np.allclose(quat_to_matrix(np.array([q.x, q.y, q.z, q.w])), rotation(spec), atol=1e-9)
    for name, info in seen_info.items():
        k = info.k.reshape(3, 3)
        assert (info.width, info.height) == (W, H)
        hfov = math.degrees(2 * math.atan(info.width / (2 * k[0, 0])))
        assert hfov == pytest.approx(RIG[name].hfov_deg)
        assert k[0, 0] == pytest.approx(k[1, 1]) and k[0, 2] == pytest.approx((W - 1) / 2) and k[1, 2] == pytest.approx((H - 1) / 2)
        assert info.header.frame_id == f"{name}_optical"
    assert set(seen_info) == set(RIG)
    # Odometry: frames, twist consistent with the pose differences.
    assert all(o.header.frame_id == "odom" and o.child_frame_id == "base_link" for o in odom)
    xy = np.array([[o.pose.pose.position.x, o.pose.pose.position.y] for o in odom])
    v = np.array([o.twist.twist.linear.x for o in odom])
    speed_fd = np.linalg.norm(np.diff(xy, axis=0), axis=1) / 0.02
    assert np.allclose(speed_fd, (v[1:] + v[:-1]) / 2, atol=0.05)
    assert v.min() > 1.0  # the expert is driving


def test_ground_truth_schema_and_sentences(bag: Path) -> None:
    records = [json.loads(m.msg.data) for m in read_messages(bag, [GROUND_TRUTH_TOPIC])]
    for r in records:
        assert set(r) >= {"stamp_ns", "scenario", "ego", "road", "lead", "cut_in", "maneuver", "lateral", "causes", "reasoning"}
        assert r["scenario"] == "cut_in"
        assert set(r["road"]["curvature_ahead"]) == {"0", "10", "20", "30", "50", "80", "120"}
        assert isinstance(r["road"]["speed_limit_kph"], int)
        assert r["maneuver"] in ("stop", "slow_down", "speed_up", "follow", "keep_speed")
        assert SENTENCE.match(r["reasoning"]), r["reasoning"]


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, bag: Path) -> None:
    again = tmp_path / "again"
    record(again, CFG, RecordSpec(seed=7, duration_s=DURATION, width=W, height=H, scenario="cut_in"), fmt="sqlite3")
    a, b = _raw(bag), _raw(again)
    assert len(a) == len(b) and a == b  # mcap vs sqlite3: identical payloads and log times
    other = tmp_path / "other"
    record(other, CFG, RecordSpec(seed=8, duration_s=DURATION, width=W, height=H, scenario="cut_in"))
    c = _raw(other)
    images = lambda rows: [r[2] for r in rows if r[0] == CAM_TOPICS[1]]  # noqa: E731
    assert images(a) != images(c)


def test_camera_rate_30hz_interpolates(tmp_path: Path) -> None:
    path = tmp_path / "hz30"
    counts = record(path, CFG, RecordSpec(seed=1, duration_s=1.0, width=W, height=H, camera_hz=30.0))
    assert counts[CAM_TOPICS[0]] == 31 and counts[CFG.ego.odometry_topic] == 51
    stamps = [m.log_time_ns for m in read_messages(path, [CAM_TOPICS[0]])]
    assert stamps[1] - stamps[0] == 33_333_333


def _paint_centroid(road_kappa: float) -> float:
    """Mean column of lane paint 30-120 m ahead in the front_tele image (ego on a straight that
    turns into a curve 20 m ahead). The 120-degree front_wide squeezes that range into a few
    rows near the horizon; the telephoto camera is the one that sees curves early."""
    from vla_ros.sim.render import CameraRenderer
    from vla_ros.sim.road import CurvePiece, Road, lane_d
    from vla_ros.sim.scene import Scene, road_window

    road = Road([CurvePiece(40.0, 0.0, 0.0), CurvePiece(10.0, 0.0, road_kappa), CurvePiece(400.0, road_kappa, road_kappa)], [(0.0, 80)])
    x, y, h = road.pose(20.0, lane_d(0))
    r = CameraRenderer(RIG["front_tele"], 288, 160)
    img = r.render(Scene(0, road_window(road, x, y, h, 20.0)))
    spec = RIG["front_tele"]
    fy = 144 / math.tan(math.radians(spec.hfov_deg / 2))
    rows = [v for v in range(160) if 30 < spec.xyz[2] / max(math.tan(math.radians(spec.pitch_deg) + math.atan((v - 79.5) / fy)), 1e-9) < 120]
    band = img[rows[0] : rows[-1] + 1].astype(int)
    paint = band.min(axis=2) > 150  # white paint; grass and asphalt are darker
    cols = np.nonzero(paint)[1]
    assert cols.size > 20
    return float(cols.mean())


def test_front_image_shifts_with_the_curve() -> None:
    straight, left, right = _paint_centroid(0.0), _paint_centroid(1 / 150), _paint_centroid(-1 / 150)
    assert left < straight - 8
    assert right > straight + 8


@pytest.mark.parametrize(
    "args, message",
    [
        (["--duration", "-1"], "--duration"),
        (["--scenario", "motorway"], "unknown scenario"),
        (["--width", "100"], "multiple of 8"),
        (["--height", "32"], "--height"),
        (["--camera-hz", "0"], "--camera-hz"),
    ],
)
def test_bad_arguments_write_nothing(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    out = tmp_path / "bag"
    assert main(["sim", "record", "--out", str(out), "--duration", "1", *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_no_overwrite_without_force(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bag"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    argv = ["sim", "record", "--out", str(out), "--duration", "0.5", "--width", str(W), "--height", str(H)]
    assert main(argv) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "precious"
    assert main([*argv, "--force"]) == 0
    assert not (out / "keep.txt").exists()
    assert bag_info(out).message_counts[CAM_TOPICS[0]] == 6


def test_sim_bag_assembles_into_stacks(bag: Path, tmp_path: Path) -> None:
    from vla_ros.replay.tick_replay import replay_ticks
    from vla_ros.sensors.frame_stack import FrameStack
    from vla_ros.sensors.pipeline import SensingPipeline

    pipeline = SensingPipeline(CFG, image_size_hw=(H // 2, W // 2))
    stacks = [t.result for t in replay_ticks(bag, pipeline, 10.0) if isinstance(t.result, FrameStack)]
    # 16 history poses at 10 Hz need 1.5 s of odometry: the last ticks of a 2 s bag assemble.
    assert len(stacks) >= 3
    st = stacks[-1]
    assert st.images.shape == (4, 4, H // 2, W // 2, 3)
    assert st.camera_names == CFG.camera_names
    # Ego history in the t0 frame ends at the origin and lies behind it (driving forward).
    assert np.allclose(st.history_xyz[-1], 0.0, atol=1e-6)
    assert st.history_xyz[0, 0] < -5.0
    out = tmp_path / "stacks"
    assert main(["stacks", "--bag", str(bag), "--out", str(out), "--sheets", "1"]) == 0
    assert json.loads((out / "stacks.json").read_text())["ticks_assembled"] >= 3


def test_preview_png(tmp_path: Path, capsys) -> None:
    out = tmp_path / "p.png"
    assert main(["sim", "preview", "--seed", "2", "--time", "3", "--out", str(out), "--width", str(W), "--height", str(H)]) == 0
    img = Image.open(out)
    assert img.size[1] > 2 * H and img.size[0] > 2 * W
    assert "scenario" in capsys.readouterr().out
    assert main(["sim", "preview", "--out", str(tmp_path / "p.jpg")]) == 2
    assert main(["sim", "preview", "--out", str(out), "--width", str(W), "--height", str(H)]) == 2  # exists, no --force


def test_cli_scenario_list_matches() -> None:
    from vla_ros.sim.command import SCENARIO_NAMES
    from vla_ros.sim.scenarios import SCENARIOS

    assert SCENARIO_NAMES == tuple(SCENARIOS)
