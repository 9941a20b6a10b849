"""The rclpy lifecycle node. It is a thin adapter over DriveNodeCore, whose behaviour is tested
over the DDS transport; these tests need a ROS 2 installation and skip visibly without one."""
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed here: the node is tested through the DDS transport")


def test_configure_activate_deactivate_cleanup(tmp_path):
    from lifecycle_msgs.msg import State as StateMsg  # noqa: F401
    from rclpy.lifecycle import TransitionCallbackReturn

    from vla_ros.ros.drive_node import DriveNode

    rclpy.init()
    try:
        node = DriveNode(parameter_overrides=[rclpy.parameter.Parameter("model", value="random:tiny")])
        assert node.on_configure(None) == TransitionCallbackReturn.SUCCESS
        assert node.get_parameter("frames.count").value == 4
        assert node.get_parameter("cameras.names").value == ["cross_left", "front_wide", "cross_right", "front_tele"]
        node.on_activate(None)
        node.on_deactivate(None)
        assert node.on_cleanup(None) == TransitionCallbackReturn.SUCCESS
        node.destroy_node()
    finally:
        rclpy.shutdown()


def test_configure_failure_leaves_the_node_unconfigured():
    from rclpy.lifecycle import TransitionCallbackReturn

    from vla_ros.ros.drive_node import DriveNode

    rclpy.init()
    try:
        node = DriveNode(parameter_overrides=[rclpy.parameter.Parameter("model", value="/no/such/model")])
        assert node.on_configure(None) == TransitionCallbackReturn.FAILURE
        assert node.core is None
        node.destroy_node()
    finally:
        rclpy.shutdown()
