"""The config schema: defaults, the shipped YAML, and errors that name the key."""
from pathlib import Path

import pytest

from vla_ros.config import Config, ConfigError, config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_drive_yaml_loads_and_matches_defaults():
    cfg = load_config(ROOT / "config" / "drive.yaml")
    assert cfg == Config().resolve_topics("/")
    assert load_config(ROOT / "config" / "drive.yaml", namespace="/") == load_config(None)
    assert cfg.camera_names == ("cross_left", "front_wide", "cross_right", "front_tele")
    assert all(c.compressed for c in cfg.cameras)
    assert cfg.frames.offsets_s == pytest.approx((-0.3, -0.2, -0.1, 0.0))
    assert (cfg.image.height, cfg.image.width) == (320, 576)
    assert cfg.ego.history_steps == 16


def test_topic_names_resolve_as_ros_resolves_them():
    """Relative names follow the namespace, absolute ones stay, ~/ goes under the node."""
    data = {
        "cameras": [{"name": "a", "topic": "cam/a/compressed"}, {"name": "b", "topic": "/shared/b/compressed"}],
        "ego": {"odometry_topic": "~/odom"},
    }
    root = config_from_dict(data)
    assert [c.topic for c in root.cameras] == ["/cam/a/compressed", "/shared/b/compressed"]
    assert root.ego.odometry_topic == "/drive_node/odom"
    assert root.outputs.trajectory_topic == "/vla/trajectory" and root.outputs.diagnostics_topic == "/diagnostics"
    car = config_from_dict(data, namespace="/car1/")
    assert [c.topic for c in car.cameras] == ["/car1/cam/a/compressed", "/shared/b/compressed"]
    assert car.ego.odometry_topic == "/car1/drive_node/odom"
    assert car.outputs.trajectory_topic == "/car1/vla/trajectory" and car.outputs.diagnostics_topic == "/diagnostics"
    assert car.resolve_topics("/other") == car  # resolved names are absolute: resolving again changes nothing
    with pytest.raises(ConfigError, match="camera topic"):  # the same topic once both are resolved
        config_from_dict({"cameras": [{"name": "a", "topic": "ego/odom"}], "ego": {"odometry_topic": "/ego/odom"}})


@pytest.mark.parametrize(
    "data, key, words",
    [
        ({"frames": {"tolerance_s": -1}}, "frames.tolerance_s", "> 0"),
        ({"frames": {"count": "4"}}, "frames.count", "integer"),
        ({"frames": {"tolerance_s": 0.06}}, "frames.tolerance_s", "interval_s/2"),
        ({"image": {"hieght": 320}}, "image.hieght", "unknown key"),
        ({"cameras": [{"name": "a", "topic": "two//slashes"}]}, "cameras[0].topic", "'//'"),
        ({"cameras": [{"name": "a", "topic": "/cam/1st"}]}, "cameras[0].topic", "digit"),
        ({"cameras": [{"name": "a", "topic": "/cam/img-raw"}]}, "cameras[0].topic", "'-'"),
        ({"outputs": {"trajectory_topic": "vla/"}}, "outputs.trajectory_topic", "end with"),
        ({"outputs": {"latency_topic": "a/~b"}}, "outputs.latency_topic", "'~'"),
        ({"ego": {"odometry_topic": ""}}, "ego.odometry_topic", "empty"),
        ({"cameras": [{"name": "a", "topic": "/x"}, {"name": "a", "topic": "/y"}]}, "cameras[1].name", "duplicate"),
        ({"cameras": []}, "cameras", "at least one"),
        ({"cameras": [{"topic": "/x"}]}, "cameras[0]", "name"),
        ({"inference": {"backend": "tensorflow"}}, "inference.backend", "one of"),
        ({"inference": {"policy_nice": 20}}, "inference.policy_nice", "[0, 19]"),
        ({"control": {"realtime_priority": 100}}, "control.realtime_priority", "[0, 99]"),
        ({"sensing": {"decode_threads": -1}}, "sensing.decode_threads", ">= 0"),
        ({"ego": {"history_interval_s": float("nan")}}, "ego.history_interval_s", "finite"),
        ({"ego": {"odometry_topic": "/cameras/front_wide/image_raw/compressed"}}, "ego.odometry_topic", "camera topic"),
        ({"reasoning": True}, "reasoning", "unknown key"),
    ],
)
def test_errors_name_the_key(data, key, words):
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert info.value.key == key
    assert f"'{key}'" in str(info.value) and words in str(info.value)


def test_raw_topic_means_image_and_ros_parameter_files_are_accepted(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text(
        "vla_drive:\n  ros__parameters:\n    cameras:\n      - {name: cam, topic: /cam/image_raw}\n    frames: {count: 2}\n"
    )
    cfg = load_config(f)
    assert cfg.camera_names == ("cam",) and not cfg.cameras[0].compressed
    assert cfg.frames.offsets_s == pytest.approx((-0.1, 0.0))


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("frames: {count: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_replace_revalidates():
    cfg = Config().replace(frames__count=2)
    assert cfg.frames.count == 2
    with pytest.raises(ConfigError, match="frames.count"):
        Config().replace(frames__count=0)
