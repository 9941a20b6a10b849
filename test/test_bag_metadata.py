"""Recorded bags carry rosbag2 metadata that both Humble's and Jazzy's readers accept, with the
QoS each topic was offered with, checked against the rules of rosbag2's own YAML decoders
(rosbag2_storage/metadata_io.cpp and qos.cpp, branches humble and jazzy)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vla_ros.cli import main
from vla_ros.replay.bag_io import read_messages

# rmw enum values, as the version <= 8 QoS strings store them
KEEP_LAST, RELIABLE, TRANSIENT_LOCAL, VOLATILE, AUTOMATIC = 1, 1, 1, 2, 1


@pytest.fixture(scope="module")
def sim_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("meta") / "drive"
    assert main(["sim", "record", "--out", str(out), "--duration", "0.5", "--width", "128", "--height", "64"]) == 0
    return out


def _duration(node: dict, key: str) -> int:
    return int(node[key])


def test_metadata_is_readable_by_humble_and_jazzy(sim_bag: Path) -> None:
    info = yaml.safe_load((sim_bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    # Humble writes 5 and reads every field it knows; Jazzy writes 8; 9 moved the QoS out of a string
    assert 5 <= info["version"] <= 8
    assert info["storage_identifier"] == "mcap"
    assert _duration(info["duration"], "nanoseconds") >= 0 and _duration(info["starting_time"], "nanoseconds_since_epoch") > 0
    assert isinstance(info["relative_file_paths"], list) and info["relative_file_paths"] == ["drive.mcap"]
    assert info["compression_format"] == "" and info["compression_mode"] == ""
    assert "custom_data" in info and info["ros_distro"]  # read by Jazzy from version 6 and 8
    (f,) = info["files"]
    assert f["path"] == "drive.mcap" and f["message_count"] == info["message_count"] and "nanoseconds" in f["duration"]
    topics = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    assert sum(t["message_count"] for t in topics.values()) == info["message_count"]
    for name, entry in topics.items():
        meta = entry["topic_metadata"]
        assert meta["serialization_format"] == "cdr" and meta["type"].count("/") == 2
        assert meta["type_description_hash"].startswith("RIHS01_")  # Jazzy reads it from version 7
        assert isinstance(meta["offered_qos_profiles"], str), f"{name}: Humble reads offered_qos_profiles as a string"
        (qos,) = yaml.safe_load(meta["offered_qos_profiles"])
        # Jazzy's decoder detects the version-8 form by an integer history
        assert qos["history"] == KEEP_LAST and qos["reliability"] == RELIABLE and qos["liveliness"] == AUTOMATIC
        for key in ("deadline", "lifespan", "liveliness_lease_duration"):
            assert set(qos[key]) == {"sec", "nsec"}
        assert isinstance(qos["avoid_ros_namespace_conventions"], bool)
        if name == "/tf_static":  # latched, so RViz and tf2 that subscribe late still get the camera frames
            assert qos["durability"] == TRANSIENT_LOCAL and qos["depth"] == 1, qos
        else:
            assert qos["durability"] == VOLATILE and qos["depth"] == 10, (name, qos)


def test_sim_bag_has_odom_to_base_link_with_every_odometry_message(sim_bag: Path) -> None:
    odom = [m.msg for m in read_messages(sim_bag, ["/ego/odom"])]
    tfs = [m.msg for m in read_messages(sim_bag, ["/tf"])]
    assert len(odom) == len(tfs) > 10
    for o, t in zip(odom, tfs):
        (tr,) = t.transforms
        assert (tr.header.frame_id, tr.child_frame_id) == (o.header.frame_id, o.child_frame_id) == ("odom", "base_link")
        assert tr.header.stamp == o.header.stamp
        assert (tr.transform.translation.x, tr.transform.translation.y) == (o.pose.pose.position.x, o.pose.pose.position.y)
        assert tr.transform.rotation.w == o.pose.pose.orientation.w
    (static,) = [m.msg for m in read_messages(sim_bag, ["/tf_static"])]
    assert {tr.header.frame_id for tr in static.transforms} == {"base_link"}  # the cameras hang off base_link
