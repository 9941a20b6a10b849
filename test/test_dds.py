"""The ROS-less DDS transport in one process: generated types match the ROS 2 wire layout, and
messages round-trip exactly through real Cyclone DDS participants."""
from __future__ import annotations

import random
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="cyclonedds (Cyclone DDS Python) is not installed: DDS transport untested")

from rosbags.interfaces import Nodetype  # noqa: E402

from vla_ros.replay.bag_io import TYPESTORE  # noqa: E402
from vla_ros.replay.pattern_bag import pattern_image  # noqa: E402
from vla_ros.ros import messages as M  # noqa: E402
from vla_ros.ros.dds_clock import ClockPublisher  # noqa: E402
from vla_ros.ros.dds_transport import DdsError, DdsTransport, domain_id_from_env, pad_cdr  # noqa: E402
from vla_ros.ros.dds_types import (  # noqa: E402
    UnknownTypeError,
    dds_topic_name,
    dds_type_name,
    idl_class,
    msgtype_from_dds_type_name,
    normalize_msgtype,
    ros_topic_name,
    to_idl,
    to_rosbags,
)

REQUIRED_TYPES = [
    "builtin_interfaces/msg/Time",
    "std_msgs/msg/Header",
    "std_msgs/msg/String",
    "std_msgs/msg/Float64MultiArray",
    "std_msgs/msg/MultiArrayLayout",
    "std_msgs/msg/MultiArrayDimension",
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/CompressedImage",
    "sensor_msgs/msg/CameraInfo",
    "sensor_msgs/msg/RegionOfInterest",
    "nav_msgs/msg/Odometry",
    "nav_msgs/msg/Path",
    "geometry_msgs/msg/Pose",
    "geometry_msgs/msg/PoseStamped",
    "geometry_msgs/msg/PoseWithCovariance",
    "geometry_msgs/msg/Twist",
    "geometry_msgs/msg/TwistStamped",
    "geometry_msgs/msg/TwistWithCovariance",
    "geometry_msgs/msg/TransformStamped",
    "tf2_msgs/msg/TFMessage",
    "diagnostic_msgs/msg/DiagnosticArray",
    "diagnostic_msgs/msg/DiagnosticStatus",
    "diagnostic_msgs/msg/KeyValue",
    "rosgraph_msgs/msg/Clock",
    "std_msgs/msg/Empty",
]

# Less common field kinds: byte/char/bool scalars and sequences, fixed arrays, nested sequences.
EXTRA_TYPES = ["std_msgs/msg/Byte", "std_msgs/msg/Char", "std_msgs/msg/Bool", "std_msgs/msg/ByteMultiArray",
               "sensor_msgs/msg/PointCloud2", "sensor_msgs/msg/NavSatFix", "geometry_msgs/msg/PoseArray"]

TIMEOUT_S = 20.0  # generous: discovery on a loaded 2-core machine


@pytest.fixture
def domain_id() -> int:
    # A fresh domain per test keeps concurrent test runs on this machine apart. Only 0..101: the
    # discovery ports of higher ids fall in Linux's ephemeral port range and may be taken.
    return random.SystemRandom().randrange(20, 102)


def cdr(msg: Any) -> bytes:
    """Exact content of a rosbags message (floats bitwise), for equality checks."""
    return bytes(TYPESTORE.serialize_cdr(msg, msg.__msgtype__))


def wait_until(pred, timeout_s: float = TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# -- random messages of any type, from the rosbags definitions ---------------------------------

_INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "byte": (-128, 127), "char": (0, 255), "int16": (-(2**15), 2**15 - 1),
               "uint16": (0, 2**16 - 1), "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1),
               "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1)}
_NP = {"bool": np.bool_, "float32": np.float32, "float64": np.float64, "byte": np.int8, "char": np.uint8}


def random_msg(msgtype: str, rng: np.random.Generator) -> Any:
    fields = {name: _random_value(desc, rng) for name, desc in TYPESTORE.fielddefs[msgtype][1]}
    return TYPESTORE.types[msgtype](**fields)


def _random_scalar(base: str, bound: int, rng: np.random.Generator) -> Any:
    if base == "string":
        n = int(rng.integers(0, min(bound, 12) + 1 if bound else 13))
        return "".join(chr(int(c)) for c in rng.integers(32, 127, n))
    if base == "bool":
        return bool(rng.integers(0, 2))
    if base.startswith("float"):
        return float(np.float32(rng.normal() * 100)) if base == "float32" else float(rng.normal() * 1e3)
    lo, hi = _INT_RANGES[base]
    return int(rng.integers(lo, hi, dtype=np.uint64 if base == "uint64" else np.int64, endpoint=True))


def _random_value(desc: tuple, rng: np.random.Generator) -> Any:
    kind, arg = desc
    if kind == Nodetype.BASE:
        return _random_scalar(*arg, rng)
    if kind == Nodetype.NAME:
        return random_msg(arg, rng)
    sub, count = arg
    n = count if kind == Nodetype.ARRAY else int(rng.integers(0, 40 if sub == (Nodetype.BASE, ("uint8", 0)) else 4))
    if sub[0] == Nodetype.BASE and sub[1][0] != "string":
        base = sub[1][0]
        dtype = _NP.get(base, np.dtype(base))
        return np.array([_random_scalar(base, 0, rng) for _ in range(n)], dtype=dtype)
    return [_random_value(sub, rng) for _ in range(n)]


# -- names and layout (no network) --------------------------------------------------------------


def test_ros2_names() -> None:
    assert dds_type_name("sensor_msgs/msg/CompressedImage") == "sensor_msgs::msg::dds_::CompressedImage_"
    assert dds_type_name("nav_msgs/Odometry") == "nav_msgs::msg::dds_::Odometry_"
    assert msgtype_from_dds_type_name("rosgraph_msgs::msg::dds_::Clock_") == "rosgraph_msgs/msg/Clock"
    assert normalize_msgtype("std_msgs/String") == "std_msgs/msg/String"
    assert dds_topic_name("/ego/odom") == "rt/ego/odom"
    assert dds_topic_name("ego/odom") == "rt/ego/odom"
    assert ros_topic_name("rt/vla/trajectory") == "/vla/trajectory"
    with pytest.raises(ValueError):
        normalize_msgtype("Odometry")
    with pytest.raises(ValueError):
        dds_topic_name("/")
    for msgtype in REQUIRED_TYPES:
        assert idl_class(msgtype).__idl_typename__ == dds_type_name(msgtype)
    assert idl_class("nav_msgs/msg/Odometry") is idl_class("nav_msgs/Odometry")  # cached


def test_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(UnknownTypeError, match="no_such_msgs/msg/Thing"):
        idl_class("no_such_msgs/msg/Thing")


@pytest.mark.parametrize("msgtype", REQUIRED_TYPES + EXTRA_TYPES)
def test_generated_idl_has_the_ros2_wire_layout(msgtype: str) -> None:
    """cyclonedds' own XCDR1 encoding of the generated IDL type is byte-identical to the ROS 2
    CDR that rosbags writes (and rosbag2 records), and decodes back to the same message."""
    rng = np.random.default_rng(abs(hash(msgtype)) % 2**32)
    for _ in range(3):
        msg = random_msg(msgtype, rng)
        ros_bytes = pad_cdr(TYPESTORE.serialize_cdr(msg, msgtype))
        idl_obj = to_idl(msg)
        assert pad_cdr(idl_obj.serialize(use_version_2=False)) == ros_bytes
        back = idl_class(msgtype).deserialize(ros_bytes)
        assert cdr(to_rosbags(back, msgtype)) == cdr(msg)


def test_duck_typed_objects_convert() -> None:
    ns = SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=3, nanosec=4), frame_id="cam"),
        format="jpeg",
        data=b"\xff\xd8\x00\x01",
    )
    msg = to_rosbags(ns, "sensor_msgs/CompressedImage")
    assert msg.header.stamp.sec == 3 and msg.format == "jpeg" and bytes(msg.data) == b"\xff\xd8\x00\x01"
    assert to_rosbags(msg, "sensor_msgs/msg/CompressedImage") is msg  # rosbags objects pass through


def test_domain_id_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROS_DOMAIN_ID", raising=False)
    assert domain_id_from_env() == 0
    monkeypatch.setenv("ROS_DOMAIN_ID", "42")
    assert domain_id_from_env() == 42
    for bad in ("x", "-1", "300"):
        monkeypatch.setenv("ROS_DOMAIN_ID", bad)
        with pytest.raises(ValueError, match="ROS_DOMAIN_ID"):
            domain_id_from_env()


# -- over real DDS participants ------------------------------------------------------------------


def _messages() -> dict[str, tuple[str, Any]]:
    jpeg = M.encode_jpeg(pattern_image(1, 77, 480, 640, texture_seed=3), quality=95)
    raw = pattern_image(2, 5, 480, 640)
    msgs = {
        "/cam/compressed": ("sensor_msgs/msg/CompressedImage", M.compressed_image(1_700_000_000_123_456_789, "cam_optical", jpeg)),
        "/cam/image_raw": ("sensor_msgs/msg/Image", M.raw_image(1_700_000_000_000_000_001, "cam_optical", raw, "rgb8")),
        "/ego/odom": ("nav_msgs/msg/Odometry", M.odometry(1_000_000_000, (1.5, -2.25, 0.125), (0.0, 0.0, 0.38268343, 0.92387953), (10.0, 0.1, 0.0), (0.0, 0.0, 0.2))),
        "/vla/reasoning": ("std_msgs/msg/String", M.string("slow down: pedestrian ahead")),
        "/tf": ("tf2_msgs/msg/TFMessage", M.tf_message([M.transform_stamped(5, "odom", "base_link", (1, 2, 3), (0, 0, 0, 1))])),
        "/cam/camera_info": ("sensor_msgs/msg/CameraInfo", M.camera_info(7, "cam_optical", 640, 480, 500.0, 501.0, 320.0, 240.0)),
    }
    rng = np.random.default_rng(7)
    for topic, msgtype in [("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray"), ("/vla/latency", "std_msgs/msg/Float64MultiArray"),
                           ("/vla/trajectory", "nav_msgs/msg/Path")]:
        msgs[topic] = (msgtype, random_msg(msgtype, rng))
    return msgs


def test_messages_round_trip_exactly(domain_id: int) -> None:
    msgs = _messages()
    got: dict[str, list[Any]] = {t: [] for t in msgs}
    with DdsTransport(domain_id=domain_id) as tx, DdsTransport(domain_id=domain_id) as rx:
        pubs = {t: tx.publisher(t, mt) for t, (mt, _) in msgs.items()}
        subs = {t: rx.subscribe(t, mt, got[t].append, depth=20) for t, (mt, _) in msgs.items()}
        assert all(p.wait_for_subscribers(timeout_s=TIMEOUT_S) for p in pubs.values())
        assert all(s.wait_for_publishers(timeout_s=TIMEOUT_S) for s in subs.values())
        for topic, (msgtype, msg) in msgs.items():
            pubs[topic].publish(msg)  # rosbags message
            pubs[topic].publish(to_idl(msg))  # IDL object (cyclonedds' own codec)
            pubs[topic].publish_raw(TYPESTORE.serialize_cdr(msg, msgtype))  # bag bytes, no round trip
        assert wait_until(lambda: all(len(v) == 3 for v in got.values())), {t: len(v) for t, v in got.items()}
        for topic, (_, msg) in msgs.items():
            for received in got[topic]:
                assert cdr(received) == cdr(msg), topic
    image = got["/cam/compressed"][0]  # the sensing layer's view: ROS field names, bytes-like data
    assert image.header.stamp.sec == 1_700_000_000 and image.header.stamp.nanosec == 123_456_789
    assert image.format == "jpeg" and bytes(image.data)[:2] == b"\xff\xd8"
    raw = got["/cam/image_raw"][0]
    assert (raw.encoding, raw.height, raw.width, raw.step) == ("rgb8", 480, 640, 1920)
    odom = got["/ego/odom"][0]
    assert (odom.pose.pose.position.x, odom.pose.pose.position.y, odom.pose.pose.orientation.z) == (1.5, -2.25, 0.38268343)


def test_decode_modes_and_ordering(domain_id: int) -> None:
    ros, idl, raw = [], [], []
    with DdsTransport(domain_id=domain_id) as tx, DdsTransport(domain_id=domain_id) as rx:
        pub = tx.publisher("/ego/odom", "nav_msgs/msg/Odometry")
        subs = [rx.subscribe("/ego/odom", "nav_msgs/msg/Odometry", ros.append, depth=100)]
        # A second reader on the same topic in the same participant, decoding differently.
        subs.append(rx.subscribe("/ego/odom", "nav_msgs/msg/Odometry", idl.append, decode="idl", depth=100))
        subs.append(rx.subscribe("/ego/odom", "nav_msgs/msg/Odometry", raw.append, decode="raw", depth=100))
        assert pub.wait_for_subscribers(3, timeout_s=TIMEOUT_S)
        assert all(s.wait_for_publishers(timeout_s=TIMEOUT_S) for s in subs)
        sent = [M.odometry(1_000_000_000 + k * 20_000_000, (k * 0.2, 0.0, 0.0), (0, 0, 0, 1)) for k in range(50)]
        for msg in sent:
            pub.publish(msg)
        assert wait_until(lambda: len(ros) == len(idl) == len(raw) == 50)
    assert [cdr(m) for m in ros] == [cdr(m) for m in sent]  # reliable: all, in order
    assert type(idl[0]).__idl_typename__ == "nav_msgs::msg::dds_::Odometry_"
    assert [m.header.stamp.nanosec for m in idl] == [m.header.stamp.nanosec for m in sent]
    assert [TYPESTORE.deserialize_cdr(r, "nav_msgs/msg/Odometry").pose.pose.position.x for r in raw] == [m.pose.pose.position.x for m in sent]


def test_qos_profiles(domain_id: int) -> None:
    with DdsTransport(domain_id=domain_id) as tx, DdsTransport(domain_id=domain_id) as rx:
        # transient local (/tf_static): a late subscriber still gets the last message
        static = tx.publisher("/tf_static", "tf2_msgs/msg/TFMessage", qos="latched")
        static.publish(M.tf_message([M.transform_stamped(1, "base_link", "cam", (1, 0, 2), (0, 0, 0, 1))]))
        late: list[Any] = []
        rx.subscribe("/tf_static", "tf2_msgs/msg/TFMessage", late.append, qos="latched")
        # sensor data: a best-effort reader matches a reliable writer...
        reliable = tx.publisher("/cam/compressed", "sensor_msgs/msg/CompressedImage")
        sensor_sub = rx.subscribe("/cam/compressed", "sensor_msgs/msg/CompressedImage", lambda m: None, qos="sensor")
        # ...but a reliable reader does not match a best-effort writer (ROS 2 semantics)
        best_effort = tx.publisher("/cam/image_raw", "sensor_msgs/msg/Image", qos="sensor")
        reliable_sub = rx.subscribe("/cam/image_raw", "sensor_msgs/msg/Image", lambda m: None)
        assert wait_until(lambda: len(late) == 1)
        assert late[0].transforms[0].child_frame_id == "cam"
        assert reliable.wait_for_subscribers(timeout_s=TIMEOUT_S) and sensor_sub.matched_count() == 1
        time.sleep(0.5)
        assert best_effort.matched_count() == 0 and reliable_sub.matched_count() == 0


def test_domains_are_isolated(domain_id: int) -> None:
    other: list[Any] = []
    same: list[Any] = []
    with DdsTransport(domain_id=domain_id) as tx, DdsTransport(domain_id=domain_id) as rx, DdsTransport(domain_id=domain_id + 1 if domain_id < 101 else domain_id - 1) as far:
        pub = tx.publisher("/chatter", "std_msgs/msg/String")
        far.subscribe("/chatter", "std_msgs/msg/String", other.append)
        rx.subscribe("/chatter", "std_msgs/msg/String", same.append)
        assert pub.wait_for_subscribers(timeout_s=TIMEOUT_S)
        time.sleep(0.3)
        pub.publish(M.string("hello"))
        assert wait_until(lambda: len(same) == 1)
        time.sleep(0.3)
    assert other == [] and same[0].data == "hello"


def test_bad_input(domain_id: int) -> None:
    got: list[Any] = []
    calls = {"n": 0}

    def flaky(msg: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("callback bug")
        got.append(msg)

    with DdsTransport(domain_id=domain_id) as tx, DdsTransport(domain_id=domain_id) as rx:
        pub = tx.publisher("/chatter", "std_msgs/msg/String")
        with pytest.raises(TypeError, match="std_msgs/msg/String"):
            pub.publish(M.odometry(0, (0, 0, 0), (0, 0, 0, 1)))
        with pytest.raises(DdsError):
            pub.publish_raw(b"\x00\x01\x00\x00\xff\xff\xff\x7f")  # string length past the end
        with pytest.raises(DdsError, match="not plain CDR"):
            pub.publish_raw(b"\x00\x07\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00")
        with pytest.raises(TypeError, match="already used"):
            tx.publisher("/chatter", "std_msgs/msg/Header")
        with pytest.raises(UnknownTypeError):
            tx.publisher("/x", "no_such_msgs/msg/Thing")
        with pytest.raises(ValueError, match="QoS profile"):
            tx.publisher("/y", "std_msgs/msg/String", qos="fast")
        sub = rx.subscribe("/chatter", "std_msgs/msg/String", flaky)
        assert pub.wait_for_subscribers(timeout_s=TIMEOUT_S) and sub.wait_for_publishers(timeout_s=TIMEOUT_S)
        pub.publish(M.string("first"))
        pub.publish(M.string("second"))
        assert wait_until(lambda: len(got) == 1)
        assert got[0].data == "second" and sub.stats.callback_errors == 1 and sub.received == 2
    tx.close()  # idempotent


def test_clock_publisher(domain_id: int) -> None:
    stamps: list[int] = []
    with DdsTransport(domain_id=domain_id) as tx, DdsTransport(domain_id=domain_id) as rx:
        sub = rx.subscribe("/clock", "rosgraph_msgs/msg/Clock", lambda m: stamps.append(m.clock.sec * 10**9 + m.clock.nanosec), qos="clock", depth=1000)
        t0 = time.monotonic()
        clock = ClockPublisher(tx, lambda: 5_000_000_000 + int((time.monotonic() - t0) * 1e9), rate_hz=200.0)
        assert sub.wait_for_publishers(timeout_s=TIMEOUT_S)
        clock.start()
        assert wait_until(lambda: len(stamps) >= 20)
        clock.stop()
        assert clock.published >= len(stamps)
    assert stamps == sorted(stamps) and stamps[0] >= 5_000_000_000
