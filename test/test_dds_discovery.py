"""Discovery settings follow the user's ROS 2 distribution as rcl + rmw_cyclonedds read them,
and the resulting configuration is accepted by a real Cyclone domain."""
from __future__ import annotations

import subprocess
import sys

import pytest

from vla_ros.ros.dds_discovery import Discovery, cyclone_fragment, discovery_from_env
from vla_ros.ros.dds_transport import cyclone_config

LO = '<CycloneDDS><Domain><General><Interfaces><NetworkInterface name="lo"/></Interfaces></General></Domain></CycloneDDS>'


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, Discovery("SUBNET")),  # Jazzy's default
        ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}, Discovery("LOCALHOST")),
        ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "OFF", "ROS_STATIC_PEERS": "10.0.0.2"}, Discovery("OFF")),
        ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "localhost"}, Discovery("LOCALHOST")),  # invalid (case) -> localhost, as rcl
        ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_STATIC_PEERS": "a;b;"}, Discovery("SUBNET", ("a", "b"))),
        ({"ROS_LOCALHOST_ONLY": "1", "ROS_STATIC_PEERS": "a", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}, Discovery("LOCALHOST")),
        ({"ROS_DISTRO": "humble", "ROS_LOCALHOST_ONLY": "1"}, Discovery("LEGACY_LOCALHOST")),
        ({"ROS_DISTRO": "humble", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}, Discovery("LEGACY_DEFAULT")),
    ],
)
def test_discovery_from_env(env: dict[str, str], expected: Discovery) -> None:
    assert discovery_from_env(env) == expected


def test_localhost_fragment_is_rmw_cyclonedds_jazzy() -> None:
    frag = cyclone_fragment(Discovery("LOCALHOST", ("192.0.2.7",)))
    assert "<AllowMulticast>false</AllowMulticast>" in frag
    assert "<ParticipantIndex>auto</ParticipantIndex><MaxAutoParticipantIndex>32</MaxAutoParticipantIndex>" in frag
    assert '<Peers><Peer address="localhost"/><Peer address="192.0.2.7"/></Peers>' in frag
    assert "Interfaces" not in frag  # rmw_cyclonedds leaves the interface to CYCLONEDDS_URI
    off = cyclone_fragment(Discovery("OFF"), pid=42)
    assert "<ParticipantIndex>none</ParticipantIndex><Tag>ros_discovery_off_42</Tag>" in off and "Peer" not in off
    subnet = cyclone_fragment(Discovery("SUBNET"))  # rmw_cyclonedds numbers participants for SUBNET too
    assert "<ParticipantIndex>auto</ParticipantIndex>" in subnet and "AllowMulticast" not in subnet and "Peer" not in subnet
    assert '<Peers><Peer address="a"/></Peers>' in cyclone_fragment(Discovery("SUBNET", ("a",)))
    assert cyclone_fragment(Discovery("SYSTEM_DEFAULT")) == "" and cyclone_fragment(Discovery("LEGACY_DEFAULT")) == ""
    assert '<NetworkInterface address="127.0.0.1"/>' in cyclone_fragment(Discovery("LEGACY_LOCALHOST"))


def test_tests_force_loopback_whatever_the_shell_set() -> None:
    from vla_ros.ros.dds_discovery import LOOPBACK_ENV, keep_dds_on_loopback

    env = keep_dds_on_loopback({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_STATIC_PEERS": "192.0.2.1",
                                "CYCLONEDDS_URI": "<CycloneDDS><Domain><General><Interfaces><NetworkInterface name='eth0'/></Interfaces></General></Domain></CycloneDDS>"})
    assert env == LOOPBACK_ENV


def test_user_uri_comes_last() -> None:
    config = cyclone_config({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "CYCLONEDDS_URI": LO})
    assert config.endswith("," + LO)
    assert config.index("AllowMulticast") < config.index(LO)


@pytest.mark.parametrize(
    "env",
    [
        {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "CYCLONEDDS_URI": LO},  # what activate sets
        {"ROS_AUTOMATIC_DISCOVERY_RANGE": "OFF", "CYCLONEDDS_URI": LO},
        {"ROS_DISTRO": "humble", "ROS_LOCALHOST_ONLY": "1"},
    ],
)
def test_real_domain_accepts_the_configuration(env: dict[str, str]) -> None:
    """Cyclone itself parses the merged configuration (a second interface block used to collide)."""
    code = (
        "from vla_ros.ros.dds_transport import DdsTransport\n"
        "with DdsTransport(domain_id=77) as d:\n"
        "    d.publisher('/x', 'std_msgs/msg/String')\n"
        "print('ok')\n"
    )
    clean = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("ROS_", "CYCLONEDDS"))}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_writer_carries_the_type_hash() -> None:
    from vla_ros.ros.dds_transport import type_hash_user_data
    from vla_ros.ros.messages import TYPESTORE

    data = type_hash_user_data("nav_msgs/msg/Path", TYPESTORE)
    # the hash Jazzy's own nav_msgs/msg/Path.json carries
    assert data == b"typehash=RIHS01_1957a5bb3cee5da65c4e52e52b65a93df227efce4c20f8458b36e73066ca334b;"
