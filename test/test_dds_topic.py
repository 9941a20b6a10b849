"""`vla-ros topic list|echo|hz` in separate processes against a publisher in this one."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading

import pytest

pytest.importorskip("cyclonedds", reason="cyclonedds (Cyclone DDS Python) is not installed: vla-ros topic untested")

from vla_ros.ros import messages as M  # noqa: E402
from vla_ros.ros.dds_transport import DdsTransport  # noqa: E402
from vla_ros.ros.topic_command import _yaml_lines, to_plain  # noqa: E402

TIMEOUT_S = 60.0


def test_plain_and_yaml_views() -> None:
    odom = M.odometry(1_500_000_000, (1.0, 2.0, 0.0), (0, 0, 0, 1))
    plain = to_plain(odom)
    assert plain["header"] == {"stamp": {"sec": 1, "nanosec": 500_000_000}, "frame_id": "odom"}
    assert plain["pose"]["pose"]["position"] == {"x": 1.0, "y": 2.0, "z": 0.0}
    assert len(plain["pose"]["covariance"]) == 36
    image = to_plain(M.compressed_image(0, "cam", b"\xff" * 1000))
    assert image["data"] == "<1000 values of uint8>" and len(to_plain(M.compressed_image(0, "cam", b"\xff" * 1000), full=True)["data"]) == 1000
    text = "\n".join(_yaml_lines(plain))
    assert "  frame_id: odom" in text and "child_frame_id: base_link" in text
    assert _yaml_lines({"s": "a: b", "e": ""}) == ['s: "a: b"', 'e: ""']


def test_topic_list_echo_hz(tmp_path) -> None:
    domain_id = random.SystemRandom().randrange(20, 102)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id))
    stop = threading.Event()

    def cli(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "vla_ros.cli", "topic", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    with DdsTransport(domain_id=domain_id) as dds:
        pub = dds.publisher("/chatter", "std_msgs/msg/String")

        def talk() -> None:
            k = 0
            while not stop.wait(0.05):  # 20 Hz
                pub.publish(M.string(f"hello {k}"))
                k += 1

        talker = threading.Thread(target=talk, daemon=True)
        talker.start()
        try:
            procs = {
                "list": cli("list", "--wait", "3"),
                "echo": cli("echo", "/chatter", "--count", "3", "--json"),  # type discovered
                "hz": cli("hz", "/chatter", "--type", "std_msgs/msg/String", "--duration", "3"),
            }
            out = {name: p.communicate(timeout=TIMEOUT_S) for name, p in procs.items()}
        finally:
            stop.set()
            talker.join()
    for name, p in procs.items():
        assert p.returncode == 0, (name, out[name][1])
    assert "/chatter [std_msgs/msg/String]" in out["list"][0].splitlines()
    lines = [json.loads(line) for line in out["echo"][0].splitlines()]
    assert len(lines) == 3
    numbers = [int(m["data"].split()[1]) for m in lines]
    assert numbers == sorted(numbers) and all(m["data"].startswith("hello ") for m in lines)
    assert "average rate:" in out["hz"][0]
