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


def test_every_published_message_converts_to_the_real_rclpy_class():
    """Built by the core, copied through each rclpy class's field table: constants untouched,
    `byte` fields as bytes, uint8 data as bytes, nested and sequence fields equal."""
    import numpy as np

    from vla_ros.ros import messages as M
    from vla_ros.ros.conversions import latency_message
    from vla_ros.ros.rclpy_convert import to_rclpy

    diag = to_rclpy(M.diagnostic_array(5_000_000_123, [M.diagnostic_status("vla_ros: control", M.DIAG_ERROR, "fallback", {"k": "v"})]))
    status = diag.status[0]
    assert status.level == bytes([2]) and status.ERROR == bytes([2])  # the class constant is intact
    assert (diag.header.stamp.sec, diag.header.stamp.nanosec) == (5, 123) and status.values[0].key == "k"
    path = to_rclpy(M.path(7, "odom", [M.pose_stamped(7, "odom", [1.0, 2.0, 3.0], [0.0, 0.0, 0.6, 0.8]) for _ in range(3)]))
    assert len(path.poses) == 3 and path.poses[2].pose.orientation.w == 0.8 and path.header.frame_id == "odom"
    lat = to_rclpy(latency_message({"t0_s": 1.5, "stack_ms": 2.0}))
    assert type(lat).__name__ == "Float64MultiArray" and len(lat.data) == lat.layout.dim[0].size and 1.5 in list(lat.data)
    assert to_rclpy(M.string("turn left")).data == "turn left"
    img = to_rclpy(M.compressed_image(9, "cam", b"\xff\xd8\x00\x01", "jpeg"))
    assert bytes(img.data) == b"\xff\xd8\x00\x01" and img.format == "jpeg"
    odom = to_rclpy(M.odometry(1, (1.0, 2.0, 0.0), (0.0, 0.0, 0.0, 1.0), (3.0, 0.0, 0.0), (0.0, 0.0, 0.1)))
    assert odom.twist.twist.linear.x == 3.0 and np.asarray(odom.pose.covariance).shape == (36,)


def test_bounded_strings_and_integer_values_in_float_arrays_convert():
    from types import SimpleNamespace

    from vla_ros.ros.rclpy_convert import _value

    assert _value("string<8>", "abc") == "abc"
    assert _value("sequence<double>", [1, 2]) == [1.0, 2.0] and all(isinstance(v, float) for v in _value("sequence<double>", [1, 2]))
    assert _value("sequence<int32>", (3, 4)) == [3, 4]
    assert _value("sequence<string<4>, 2>", ["a", "b"]) == ["a", "b"]
    assert SimpleNamespace  # keeps the import used on every Python


def test_activation_failure_goes_back_to_inactive_and_error_releases_the_policy(tmp_path):
    """An exception while activating (here: the core refusing to start) is logged and returns
    FAILURE with subscriptions gone and publishers disabled; on_error releases the policy
    process and publishers so nothing leaks."""
    from rclpy.lifecycle import TransitionCallbackReturn

    from vla_ros.ros.drive_node import DriveNode

    rclpy.init()
    try:
        node = DriveNode(parameter_overrides=[rclpy.parameter.Parameter("model", value="random:tiny")])
        assert node.on_configure(None) == TransitionCallbackReturn.SUCCESS
        policy = node._policy
        proc = policy._proc
        assert proc.is_alive()

        def refuse() -> None:
            raise RuntimeError("timer thread could not start")

        node.core.start = refuse
        assert node.on_activate(None) == TransitionCallbackReturn.FAILURE
        assert node._subs == [] and not any(p.is_activated for p in node._pubs.values())
        assert node.on_error(None) == TransitionCallbackReturn.SUCCESS
        assert node.core is None and node._pubs == {} and node._policy is None
        proc.join(10)
        assert not proc.is_alive()  # the policy process is gone
        node.destroy_node()
    finally:
        rclpy.shutdown()


def test_a_mistyped_parameter_override_fails_configure_naming_it():
    from rclpy.lifecycle import TransitionCallbackReturn

    from vla_ros.ros.drive_node import DriveNode

    rclpy.init()
    try:
        node = DriveNode(parameter_overrides=[rclpy.parameter.Parameter("model", value="random:tiny"),
                                              rclpy.parameter.Parameter("inference.rat_hz", value=5.0)])
        assert node.on_configure(None) == TransitionCallbackReturn.FAILURE
        assert node.core is None and node._policy is None
        node.destroy_node()
    finally:
        rclpy.shutdown()
