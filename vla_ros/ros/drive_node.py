"""The rclpy lifecycle node `drive_node` (console script `drive_node`, what drive.launch.py
starts): a thin adapter over DriveNodeCore.

- on_configure: read the YAML named by the `config` parameter, declare every key as a read-only
  ROS parameter (launch and `-p` overrides win, and are validated by the same schema), resolve
  topic names in the node's namespace, find the model (the working directory, else the
  package's share directory), load it; a failure leaves the node unconfigured with the reason
  on the ROS logger and nothing left running.
- on_activate: publishers enabled first, then subscriptions (best-effort sensor QoS for cameras
  and odometry, which hears reliable publishers too) and the core's timers.
- on_deactivate / on_cleanup / on_shutdown / on_error: timers stop, subscriptions go, and (from
  cleanup on) publishers and the policy process are released.
Logs of vla_ros's modules go to the ROS logger while the node is configured.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from vla_ros.config import DEFAULT_NODE_NAME, ConfigError, load_config
from vla_ros.ros.clock import WallClock
from vla_ros.ros.heap import keep_large_blocks_out_of_arenas
from vla_ros.ros.model_path import resolve_model_path
from vla_ros.ros.node_core import DriveNodeCore, input_topics, output_topics
from vla_ros.ros.node_factory import make_node_core
from vla_ros.ros.parameters import from_parameters, to_parameters
from vla_ros.ros.rclpy_convert import rclpy_class, to_rclpy

# InputTopic.qos -> rclpy profile. State (odometry, joint states): best effort (matches reliable
# and best-effort publishers), deep enough for 100 Hz while a callback is busy. Latched: the
# instruction a publisher keeps for late joiners.
_INPUT_QOS = {
    "sensor": qos_profile_sensor_data,
    "state": QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST, depth=50),
    "latched": QoSProfile(reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                          history=HistoryPolicy.KEEP_LAST, depth=1),
    "default": QoSProfile(depth=10),
}
_OUTPUT_QOS = QoSProfile(depth=10)


def _command_topics(config: Any) -> str:
    """Where the node's commands go: the trajectory topic, or an arm's controller topics."""
    if not config.chunk_mode:
        return config.outputs.trajectory_topic
    return " and ".join(t for t in (config.arm.joint_trajectory_topic, config.arm.forward_command_topic) if t)


def _importable(package: str) -> bool:
    try:
        __import__(f"{package}.msg")
    except ImportError:
        return False
    return True


def _share_dir() -> str | None:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return get_package_share_directory("vla_ros")
    except PackageNotFoundError:
        return None


class NodeClock(WallClock):
    """The node's ROS clock (follows /clock when use_sim_time is set), for the core's timers;
    waiting polls it like the system clock (at least 1 ms a poll while /clock is paused)."""

    def __init__(self, node: LifecycleNode) -> None:
        self._node = node

    def now_ns(self) -> int:
        return self._node.get_clock().now().nanoseconds

    def started(self) -> bool:
        return self.now_ns() > 0


class RosLogHandler(logging.Handler):
    """Python logging records of vla_ros's modules -> the node's ROS logger (console, /rosout)."""

    def __init__(self, node: LifecycleNode) -> None:
        super().__init__()
        self._logger = node.get_logger()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.ERROR:
                self._logger.error(text)
            elif record.levelno >= logging.WARNING:
                self._logger.warning(text)
            elif record.levelno >= logging.INFO:
                self._logger.info(text)
            else:
                self._logger.debug(text)
        except Exception:  # noqa: BLE001 - logging must never take the node down
            self.handleError(record)


class DriveNode(LifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(DEFAULT_NODE_NAME, **kwargs)
        for name, text in (
            ("config", "vla_ros YAML config file (empty: the built-in defaults = config/drive.yaml)"),
            ("model", "checkpoint directory or preset (overrides model.path)"),
            ("backend", "torch | onnxruntime | tensorrt (overrides inference.backend)"),
            ("device", "cpu | cuda | cuda:N (overrides model.device)"),
        ):
            self.declare_parameter(name, "", ParameterDescriptor(description=text, read_only=True))
        self.core: DriveNodeCore | None = None
        self._pubs: dict[str, Any] = {}
        self._policy: Any = None  # the loaded policy (a PolicyProcess by default), closed on cleanup
        self._subs: list[Any] = []
        self._log_handler: RosLogHandler | None = None
        self.published_inactive = 0  # messages the core handed over while publishers were disabled
        self._jump_handle: Any = None

    # -- lifecycle ------------------------------------------------------------------------

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        self._forward_logs(True)
        try:
            config = self._load_config()
            from vla_ros.runtime.policy_process import load_node_policy  # heavy imports only when configuring

            self.get_logger().info(f"loading model {config.model.path} ({config.inference.backend}, {config.model.device})")
            policy, _ = load_node_policy(config)
            self._policy = policy
            autoware = bool(config.outputs.autoware_trajectory_topic) and _importable("autoware_planning_msgs")
            for topic, msgtype in output_topics(config, autoware).items():
                self._pubs[topic] = self.create_lifecycle_publisher(rclpy_class(msgtype), topic, _OUTPUT_QOS)
            self.core = make_node_core(config, policy, self._publish, NodeClock(self), model_name=config.model.path, autoware=autoware)
        except Exception as exc:  # noqa: BLE001 - configure failure: stay unconfigured, say why
            self.get_logger().error(f"configure failed: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"configured: model {config.model.path} ({config.inference.backend}), "
                               f"{len(config.cameras)} cameras, output on {_command_topics(config)}")
        return TransitionCallbackReturn.SUCCESS

    def _load_config(self) -> Any:
        namespace, name = self.get_namespace(), self.get_name()
        path = self.get_parameter("config").value or None
        params = to_parameters(load_config(path, namespace=namespace, node_name=name))
        for key, value in params.items():
            if not self.has_parameter(key):
                # dynamic typing: `-p inference.rate_hz:=20` (an int for a float key) is checked by
                # the config schema below, which names the key, instead of being refused by type
                descriptor = ParameterDescriptor(description=f"vla_ros config key {key}", read_only=True, dynamic_typing=True)
                self.declare_parameter(key, value, descriptor)
        # an override for a key that does not exist (`-p inference.rat_hz:=5`) is a mistake, not a no-op
        unknown = sorted(k for k in self._parameter_overrides if not self.has_parameter(k))
        if unknown:
            raise ConfigError(unknown[0], "no such parameter: not a config key nor one of config, model, backend, device, use_sim_time")
        config = from_parameters({k: self.get_parameter(k).value for k in params}, namespace=namespace, node_name=name)
        overrides: dict[str, Any] = {}
        for param, key in (("model", "model__path"), ("backend", "inference__backend"), ("device", "model__device")):
            if self.get_parameter(param).value:
                overrides[key] = self.get_parameter(param).value
        config = config.replace(**overrides) if overrides else config
        path, source = resolve_model_path(config.model.path, _share_dir())
        if source == "package share":
            self.get_logger().info(f"model '{config.model.path}' not found in {os.getcwd()}; using the installed {path}")
        return config.replace(model__path=path) if path != config.model.path else config

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        if self.core is None:
            return TransitionCallbackReturn.FAILURE
        try:
            result = super().on_activate(state)  # enables the lifecycle publishers before anything publishes
            if result != TransitionCallbackReturn.SUCCESS:
                return result
            cfg = self.core.config
            for sub in input_topics(cfg):
                self._subs.append(self.create_subscription(rclpy_class(sub.msgtype), sub.topic, self._callback(sub.topic), _INPUT_QOS[sub.qos]))
            # /clock going back (a looped bag with use_sim_time) resets the sensing buffers, as the
            # DDS node does from its /clock subscription
            self._jump_handle = self.get_clock().create_jump_callback(
                JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1)), post_callback=self._on_time_jump)
            self.core.start()
        except Exception as exc:  # noqa: BLE001 - back to inactive with the reason logged
            self.get_logger().error(f"activate failed: {exc}")
            self._stop_io()
            super().on_deactivate(state)
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info("active")
        return result

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_io()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._stop_io()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.release_all()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().error(f"error while in {getattr(state, 'label', 'a transition')}: releasing the model and going back to unconfigured")
        self.release_all()
        return TransitionCallbackReturn.SUCCESS

    def release_all(self) -> None:
        """Stop everything and release the model (idempotent; also used when the process exits).
        The policy process is closed even if stopping the timers or a publisher fails."""
        try:
            self._stop_io()
        finally:
            self._release()

    # -- wiring ---------------------------------------------------------------------------

    def _callback(self, topic: str) -> Any:
        def handle(msg: Any) -> None:
            core = self.core
            if core is not None:
                core.on_message(topic, msg)

        return handle

    def _publish(self, topic: str, msg: Any) -> None:
        pub = self._pubs.get(topic)
        if pub is None:
            return
        if not pub.is_activated:  # rclpy drops it silently; count and say so (it would be a bug in the order of things)
            self.published_inactive += 1
            if self.published_inactive == 1:
                self.get_logger().warning(f"published on {topic} while the node's publishers are not enabled: dropped")
            return
        try:
            pub.publish(to_rclpy(msg))
        except Exception:
            if not self.context.ok():
                return  # shutting down: the context went away under a timer thread
            raise

    def _on_time_jump(self, jump: Any) -> None:
        core = self.core
        if core is not None and not jump.clock_change:
            now = self.get_clock().now().nanoseconds
            core.pipeline.clock_moved(now, now - jump.delta.nanoseconds)

    def _stop_io(self) -> None:
        if self._jump_handle is not None:
            self._jump_handle.unregister()
            self._jump_handle = None
        if self.core is not None:
            self.core.stop()
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs.clear()

    def _release(self) -> None:
        pubs, self._pubs = list(self._pubs.values()), {}
        policy, self._policy = self._policy, None
        self.core = None
        try:
            for pub in pubs:
                try:
                    self.destroy_lifecycle_publisher(pub)
                except Exception as exc:  # noqa: BLE001 - keep releasing the rest
                    self.get_logger().warning(f"could not destroy a publisher: {exc}")
        finally:
            if policy is not None and hasattr(policy, "close"):
                policy.close()  # the policy process (inference.separate_process)
            self._forward_logs(False)

    def _forward_logs(self, on: bool) -> None:
        package_logger = logging.getLogger("vla_ros")
        if on and self._log_handler is None:
            self._log_handler = RosLogHandler(self)
            package_logger.addHandler(self._log_handler)
            package_logger.setLevel(logging.INFO)
            package_logger.propagate = False  # once on the ROS console, not twice
        elif not on and self._log_handler is not None:
            package_logger.removeHandler(self._log_handler)
            package_logger.propagate = True
            self._log_handler = None


def main(argv: list[str] | None = None, autostart: bool = False, duration_s: float | None = None, status_every_s: float = 0.0) -> int:
    """Console script `drive_node`. Launch files configure and activate it through lifecycle
    events; `vla-ros node --transport ros` passes autostart=True to do it here. SIGINT and
    SIGTERM end it cleanly (exit 0): the core's timers stop and the policy process is closed
    before rclpy shuts down, so no publish races a dead context."""
    keep_large_blocks_out_of_arenas()  # a node runs for days: bounded heap fragmentation
    stop = threading.Event()
    # Our handlers, not rclpy's: rclpy's would shut the context down at once, under the core's
    # control thread, which may be publishing at that moment.
    rclpy.init(args=argv if argv is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node = DriveNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    status = 0
    try:
        if autostart:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                status = 1
            elif node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("activation failed; exiting")
                status = 1
        start = time.monotonic()
        next_status = start + status_every_s
        while status == 0 and not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
            now = time.monotonic()
            if duration_s is not None and now - start >= duration_s:
                break
            if status_every_s > 0 and now >= next_status and node.core is not None:
                next_status = now + status_every_s
                node.get_logger().info(node.core.status_line())
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # the context was shut down from elsewhere; release below
    finally:
        # A Ctrl-C reaches the node twice (the terminal's process group, then ros2 launch
        # forwarding it): further SIGINT/SIGTERM must not interrupt the release.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        node.release_all()
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return status


if __name__ == "__main__":
    sys.exit(main())
