"""Config <-> flat ROS parameters, as the rclpy node declares them."""
import pytest

from vla_ros.config import Config, ConfigError
from vla_ros.ros.parameters import from_parameters, to_parameters


def test_round_trip_of_defaults_and_a_custom_config():
    assert from_parameters(to_parameters(Config())) == Config().resolve_topics("/")
    in_ns = from_parameters(to_parameters(Config()), namespace="/car1")
    assert in_ns.ego.odometry_topic == "/car1/ego/odom" and in_ns.outputs.diagnostics_topic == "/diagnostics"
    cfg = Config().replace(
        cameras=[{"name": "a", "topic": "/a/image_raw", "camera_info_topic": "/a/camera_info"}, {"name": "b", "topic": "/b/compressed"}],
        frames__count=2,
        inference__reasoning=True,
    )
    params = to_parameters(cfg)
    assert params["cameras.names"] == ["a", "b"] and params["cameras.camera_info_topics"] == ["/a/camera_info", ""]
    assert params["frames.count"] == 2 and params["inference.reasoning"] is True
    assert from_parameters(params) == cfg


def test_parameters_are_scalars_or_homogeneous_lists():
    """What rclpy can declare: scalars, or lists of one type (joint limits are float lists, camera
    ids int lists); None only for an optional key, declared as not set with dynamic typing."""
    for key, value in to_parameters(Config()).items():
        if value is None:
            assert key == "navigation.guidance_weight", key
        elif isinstance(value, list):
            assert len({type(v) for v in value}) <= 1 and all(isinstance(v, (str, float, int)) for v in value), key
        else:
            assert isinstance(value, (bool, int, float, str)), key


def test_nested_arm_sections_round_trip_as_dotted_keys():
    cfg = Config().replace(control__mode="chunk", arm={"joint_names": ["shoulder", "elbow"],
                                                       "limits": {"max_velocity": [1.5, 2.5]}, "rtc": {"enabled": False}})
    params = to_parameters(cfg)
    assert params["arm.limits.max_velocity"] == [1.5, 2.5] and params["arm.rtc.enabled"] is False
    assert from_parameters(params) == cfg
    params["arm.limits.max_velocity"] = [1.5]  # one value: every joint
    assert from_parameters(params).arm.limits.per_joint("max_velocity", 2) == (1.5, 1.5)
    params["arm.limits.max_velocity"] = [1.0, 2.0, 3.0]
    with pytest.raises(ConfigError, match="arm.limits.max_velocity"):
        from_parameters(params)


def test_an_unset_optional_key_is_a_parameter_that_an_override_sets():
    """`navigation.guidance_weight: null` (the checkpoint's setting) is declared, so `-p` can set it."""
    params = to_parameters(Config())
    assert "navigation.guidance_weight" in params and params["navigation.guidance_weight"] is None
    assert from_parameters(params).navigation.guidance_weight is None
    params["navigation.guidance_weight"] = 2  # an int from the command line, for a float key
    assert from_parameters(params).navigation.policy_guidance_weight == 2.0
    params["navigation.guidance_weight"] = float("nan")
    with pytest.raises(ConfigError, match="navigation.guidance_weight"):
        from_parameters(params)


def test_bad_override_names_the_key():
    params = to_parameters(Config())
    params["frames.tolerance_s"] = -0.1
    with pytest.raises(ConfigError, match="frames.tolerance_s"):
        from_parameters(params)
    params = to_parameters(Config())
    params["cameras.topics"] = params["cameras.topics"][:2]
    with pytest.raises(ConfigError, match="cameras.topics"):
        from_parameters(params)
