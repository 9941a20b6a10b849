"""`vla-ros play` in a separate process, received over real DDS on loopback by this process."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cyclonedds", reason="cyclonedds (Cyclone DDS Python) is not installed: vla-ros play untested")

from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication  # noqa: E402
from cyclonedds.domain import DomainParticipant  # noqa: E402
from cyclonedds.qos import Policy  # noqa: E402

from vla_ros.cli import main  # noqa: E402
from vla_ros.config import Config  # noqa: E402
from vla_ros.replay.bag_io import TYPESTORE, bag_info, read_messages  # noqa: E402
from vla_ros.replay.pattern_bag import PatternBagSpec, write_pattern_bag  # noqa: E402
from vla_ros.ros.dds_transport import DdsTransport  # noqa: E402

TIMEOUT_S = 60.0  # generous: two Python processes on a loaded 2-core machine
TOLERANCE_S = 0.25  # slack on "playback takes at least the bag's duration / rate"


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dds_play") / "pattern.mcap"
    write_pattern_bag(path, Config(), PatternBagSpec(duration_s=2, height=64, width=96))
    return path


@pytest.fixture
def domain_id() -> int:
    return random.SystemRandom().randrange(20, 102)


def play(bag: Path, domain_id: int, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id))
    cmd = [sys.executable, "-m", "vla_ros.cli", "play", "--bag", str(bag), "--quiet", "--wait-subscribers", "30", "--start-delay", "0.3", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class Recorder:
    """Subscribes to topics and keeps (receive time, message) per topic."""

    def __init__(self, transport: DdsTransport) -> None:
        self.transport = transport
        self.got: dict[str, list[tuple[float, Any]]] = {}
        self.lock = threading.Lock()

    def add(self, topic: str, msgtype: str, qos: str = "default") -> None:
        self.got[topic] = []

        def on_msg(msg: Any) -> None:
            with self.lock:
                self.got[topic].append((time.monotonic(), msg))

        self.transport.subscribe(topic, msgtype, on_msg, qos=qos, depth=1000)

    def count(self, topic: str) -> int:
        with self.lock:
            return len(self.got[topic])

    def settle(self, expected: dict[str, int], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(self.count(t) < n for t, n in expected.items()):
            time.sleep(0.02)


def cdr(msg: Any) -> bytes:
    return bytes(TYPESTORE.serialize_cdr(msg, msg.__msgtype__))


def test_play_publishes_the_bag_in_real_time(bag: Path, domain_id: int) -> None:
    info = bag_info(bag)
    expected = {t: n for t, n in info.message_counts.items()}
    with DdsTransport(domain_id=domain_id) as dds:
        rec = Recorder(dds)
        for topic, msgtype in info.topic_types.items():
            rec.add(topic, msgtype)
        rec.add("/clock", "rosgraph_msgs/msg/Clock", qos="clock")
        spy = DomainParticipant(domain_id)
        publications = BuiltinDataReader(spy, BuiltinTopicDcpsPublication)

        proc = play(bag, domain_id, "--clock")
        _, err = proc.communicate(timeout=TIMEOUT_S)
        assert proc.returncode == 0, err
        rec.settle(expected)
        seen = {p.topic_name: p for p in publications.take(N=100) if p.topic_name.startswith("rt/")}

    # every message, in order, byte for byte what the bag holds
    for topic, msgtype in info.topic_types.items():
        sent = [m.msg for m in read_messages(bag, [topic])]
        received = [m for _, m in rec.got[topic]]
        assert len(received) == len(sent) == expected[topic], topic
        assert [cdr(m) for m in received] == [cdr(m) for m in sent], topic
    odom = [m for _, m in rec.got["/ego/odom"]]
    assert odom[5].pose.pose.position.x == [m.msg for m in read_messages(bag, ["/ego/odom"])][5].pose.pose.position.x
    image = rec.got["/cameras/front_wide/image_raw/compressed"][3][1]
    assert image.format == "jpeg" and bytes(image.data)[:2] == b"\xff\xd8"

    # the recorded spacing is kept: playback takes at least the bag's duration
    times = sorted(t for topic in info.topic_types for t, _ in rec.got[topic])
    assert times[-1] - times[0] >= info.duration_s - TOLERANCE_S

    # /clock carries bag time, never backwards (no --loop)
    clock = [m.clock.sec * 10**9 + m.clock.nanosec for _, m in rec.got["/clock"]]
    assert len(clock) >= 20
    assert clock == sorted(clock)
    assert info.start_ns <= clock[0] and clock[-1] <= info.end_ns + 500_000_000

    # ROS 2 conventions on the wire, as a remote participant discovers them
    assert seen["rt/ego/odom"].type_name == "nav_msgs::msg::dds_::Odometry_"
    assert seen["rt/cameras/front_wide/image_raw/compressed"].type_name == "sensor_msgs::msg::dds_::CompressedImage_"
    assert seen["rt/clock"].type_name == "rosgraph_msgs::msg::dds_::Clock_"
    assert set(seen) == {"rt" + t for t in info.topic_types} | {"rt/clock"}
    odom_qos = seen["rt/ego/odom"].qos
    assert odom_qos[Policy.Reliability] == Policy.Reliability.Reliable(max_blocking_time=odom_qos[Policy.Reliability].max_blocking_time)
    assert odom_qos[Policy.Durability] == Policy.Durability.Volatile
    assert odom_qos[Policy.History] == Policy.History.KeepLast(10)
    assert odom_qos[Policy.DataRepresentation] == Policy.DataRepresentation(use_cdrv0_representation=True)
    assert seen["rt/clock"].qos[Policy.Reliability] == Policy.Reliability.BestEffort


def test_play_rate_and_topic_filter(bag: Path, domain_id: int) -> None:
    info = bag_info(bag)
    with DdsTransport(domain_id=domain_id) as dds:
        rec = Recorder(dds)
        rec.add("/ego/odom", "nav_msgs/msg/Odometry")
        rec.add("/cameras/front_wide/image_raw/compressed", "sensor_msgs/msg/CompressedImage")
        proc = play(bag, domain_id, "--rate", "2", "--topics", "/ego/odom")
        _, err = proc.communicate(timeout=TIMEOUT_S)
        assert proc.returncode == 0, err
        rec.settle({"/ego/odom": info.message_counts["/ego/odom"]})
        time.sleep(0.2)
    times = [t for t, _ in rec.got["/ego/odom"]]
    assert len(times) == info.message_counts["/ego/odom"]
    assert rec.got["/cameras/front_wide/image_raw/compressed"] == []
    assert times[-1] - times[0] >= info.duration_s / 2 - TOLERANCE_S


def test_play_loops_until_interrupted(bag: Path, domain_id: int) -> None:
    n = bag_info(bag).message_counts["/ego/odom"]
    with DdsTransport(domain_id=domain_id) as dds:
        rec = Recorder(dds)
        rec.add("/ego/odom", "nav_msgs/msg/Odometry")
        proc = play(bag, domain_id, "--rate", "4", "--loop", "--topics", "/ego/odom")
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while rec.count("/ego/odom") < n + 20 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            _, err = proc.communicate(timeout=TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in rec.got["/ego/odom"]]
    assert len(stamps) >= n + 20
    assert stamps[:n] == sorted(stamps[:n])
    assert stamps[n] == stamps[0] < stamps[n - 1]  # the second pass starts over: stamps jump back


def test_play_user_errors(bag: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["play", "--bag", str(tmp_path / "missing.mcap")]) == 2
    assert main(["play", "--bag", str(bag), "--topics", "/nope"]) == 2
    assert "/ego/odom" in capsys.readouterr().err  # lists what the bag has
    assert main(["play", "--bag", str(bag), "--rate", "0"]) == 2
    (tmp_path / "broken.mcap").write_bytes(b"not a bag")
    assert main(["play", "--bag", str(tmp_path / "broken.mcap")]) == 2


def test_play_latches_the_topics_the_bag_recorded_as_transient_local(tmp_path: Path, domain_id: int) -> None:
    """An arm bag records its instruction as offered transient local: play offers it so too, so a
    subscriber that joins after the instruction went out (a node started late) still gets it;
    the joint states stay volatile."""
    bag = tmp_path / "arm"
    root = Path(__file__).resolve().parents[1]
    assert main(["pattern-bag", "--arm", "--config", str(root / "config" / "arm.yaml"), "--out", str(bag), "--duration", "4",
                 "--instruction", "stack the cubes"]) == 0
    with DdsTransport(domain_id=domain_id) as dds:
        early = Recorder(dds)
        early.add("/joint_states", "sensor_msgs/msg/JointState")  # play waits for a subscriber, then starts
        # no subscriber to the instruction yet: play waits for one at most 3 s, then publishes anyway
        proc = play(bag, domain_id, "--topics", "/vla/instruction", "/joint_states", "--wait-subscribers", "3")
        early.settle({"/joint_states": 50}, TIMEOUT_S)  # well past the instruction (the bag's first message)
        late = Recorder(dds)
        late.add("/vla/instruction", "std_msgs/msg/String", qos="latched")
        late.settle({"/vla/instruction": 1})
        _, err = proc.communicate(timeout=TIMEOUT_S)
        assert proc.returncode == 0, err
    assert [m.data for _, m in late.got["/vla/instruction"]] == ["stack the cubes"]
