"""The config schema: defaults, the shipped YAML, and errors that name the key."""
from pathlib import Path

import pytest

from vla_ros.config import Config, ConfigError, config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_drive_yaml_loads_and_matches_defaults():
    cfg = load_config(ROOT / "config" / "drive.yaml")
    assert cfg == Config()
    assert cfg.camera_names == ("cross_left", "front_wide", "cross_right", "front_tele")
    assert all(c.compressed for c in cfg.cameras)
    assert cfg.frames.offsets_s == pytest.approx((-0.3, -0.2, -0.1, 0.0))
    assert (cfg.image.height, cfg.image.width) == (320, 576)
    assert cfg.ego.history_steps == 16


@pytest.mark.parametrize(
    "data, key, words",
    [
        ({"frames": {"tolerance_s": -1}}, "frames.tolerance_s", "> 0"),
        ({"frames": {"count": "4"}}, "frames.count", "integer"),
        ({"frames": {"tolerance_s": 0.06}}, "frames.tolerance_s", "interval_s/2"),
        ({"image": {"hieght": 320}}, "image.hieght", "unknown key"),
        ({"cameras": [{"name": "a", "topic": "no_slash"}]}, "cameras[0].topic", "absolute"),
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
