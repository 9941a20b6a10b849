"""The rclpy lifecycle node (console script `drive_node`): a thin adapter over DriveNodeCore.

- on_configure: read the YAML named by the `config` parameter, declare every key as a ROS
  parameter (descriptors carry the schema's documentation; launch overrides win), validate,
  load the model; a failure leaves the node unconfigured with the reason logged.
- on_activate: subscriptions (sensor-data QoS for cameras) and timers start.
- on_deactivate / on_cleanup: timers stop, subscriptions go, the model is released.
Everything the node does beyond this wiring lives in DriveNodeCore and is tested through the
DDS transport; this module needs a ROS 2 installation (rclpy).
"""
from __future__ import annotations

import sys
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import QoSProfile, qos_profile_sensor_data

from vla_ros.config import load_config
from vla_ros.ros.clock import WallClock
from vla_ros.ros.messages import AUTOWARE_TRAJECTORY
from vla_ros.ros.node_core import DriveNodeCore
from vla_ros.ros.parameters import from_parameters, to_parameters
from vla_ros.ros.rclpy_convert import rclpy_class, to_rclpy

_OUTPUT_TYPES = {
    "trajectory_topic": "nav_msgs/msg/Path",
    "reasoning_topic": "std_msgs/msg/String",
    "diagnostics_topic": "diagnostic_msgs/msg/DiagnosticArray",
    "latency_topic": "std_msgs/msg/Float64MultiArray",
}


def _importable(package: str) -> bool:
    try:
        __import__(f"{package}.msg")
    except ImportError:
        return False
    return True


class NodeClock(WallClock):
    """The node's ROS clock (follows /clock when use_sim_time is set), for the core's timers;
    waiting polls it like the system clock (at least 1 ms a poll while /clock is paused)."""

    def __init__(self, node: LifecycleNode) -> None:
        self._node = node

    def now_ns(self) -> int:
        return self._node.get_clock().now().nanoseconds

    def started(self) -> bool:
        return self.now_ns() > 0


class DriveNode(LifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("vla_drive", **kwargs)
        self.declare_parameter("config", "", ParameterDescriptor(description="vla_ros YAML config file", read_only=True))
        self.declare_parameter("model", "", ParameterDescriptor(description="checkpoint directory or preset (overrides model.path)", read_only=True))
        self.declare_parameter("backend", "", ParameterDescriptor(description="torch | onnxruntime | tensorrt (overrides inference.backend)", read_only=True))
        self.core: DriveNodeCore | None = None
        self._pubs: dict[str, Any] = {}
        self._policy: Any = None  # the loaded policy (a PolicyProcess by default), closed on cleanup
        self._subs: list[Any] = []

    # -- lifecycle ------------------------------------------------------------------------

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            path = self.get_parameter("config").value or None
            config = load_config(path)
            params = to_parameters(config)
            for key, value in params.items():
                if not self.has_parameter(key):
                    self.declare_parameter(key, value, ParameterDescriptor(description=f"vla_ros config key {key}", read_only=True))
            config = from_parameters({k: self.get_parameter(k).value for k in params})
            overrides: dict[str, Any] = {}
            if self.get_parameter("model").value:
                overrides["model__path"] = self.get_parameter("model").value
            if self.get_parameter("backend").value:
                overrides["inference__backend"] = self.get_parameter("backend").value
            config = config.replace(**overrides) if overrides else config
            from vla_ros.runtime.policy_process import load_node_policy  # heavy imports only when configuring

            policy, _ = load_node_policy(config)
            self._policy = policy
            for key, msgtype in _OUTPUT_TYPES.items():
                topic = getattr(config.outputs, key)
                self._pubs[topic] = self.create_lifecycle_publisher(rclpy_class(msgtype), topic, QoSProfile(depth=10))
            autoware = bool(config.outputs.autoware_trajectory_topic) and _importable("autoware_planning_msgs")
            if autoware:
                topic = config.outputs.autoware_trajectory_topic
                self._pubs[topic] = self.create_lifecycle_publisher(rclpy_class(AUTOWARE_TRAJECTORY), topic, QoSProfile(depth=10))
            self.core = DriveNodeCore(config, policy, self._publish, NodeClock(self), model_name=config.model.path, autoware=autoware)
        except Exception as exc:  # noqa: BLE001 - configure failure: stay unconfigured, say why
            self.get_logger().error(f"configure failed: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"configured with model {config.model.path} ({config.inference.backend})")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        assert self.core is not None
        cfg = self.core.config
        for cam in cfg.cameras:
            msgtype = "sensor_msgs/msg/CompressedImage" if cam.compressed else "sensor_msgs/msg/Image"
            self._subs.append(self.create_subscription(rclpy_class(msgtype), cam.topic, self._callback(cam.topic), qos_profile_sensor_data))
        self._subs.append(
            self.create_subscription(rclpy_class("nav_msgs/msg/Odometry"), cfg.ego.odometry_topic, self._callback(cfg.ego.odometry_topic), QoSProfile(depth=50))
        )
        self.core.start()
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_io()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._stop_io()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_io()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    # -- wiring ---------------------------------------------------------------------------

    def _callback(self, topic: str) -> Any:
        def handle(msg: Any) -> None:
            if self.core is not None:
                self.core.on_message(topic, msg)

        return handle

    def _publish(self, topic: str, msg: Any) -> None:
        pub = self._pubs.get(topic)
        if pub is not None:
            pub.publish(to_rclpy(msg))

    def _stop_io(self) -> None:
        if self.core is not None:
            self.core.stop()
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs.clear()

    def _release(self) -> None:
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._pubs.clear()
        self.core = None
        policy, self._policy = self._policy, None
        if policy is not None and hasattr(policy, "close"):
            policy.close()  # the policy process (inference.separate_process)


def main(argv: list[str] | None = None, autostart: bool = False) -> int:
    """Console script `drive_node`. Launch files configure and activate it through lifecycle
    events; `vla-ros node --transport ros` passes autostart=True to do it here."""
    rclpy.init(args=argv if argv is not None else sys.argv)
    node = DriveNode()
    if autostart:
        node.trigger_configure()
        if node.core is None:
            node.destroy_node()
            rclpy.shutdown()
            return 1
        node.trigger_activate()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
