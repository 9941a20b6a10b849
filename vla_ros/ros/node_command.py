"""`vla-ros node`: run the drive node over the ROS-less DDS transport or as the rclpy node."""
from __future__ import annotations

import argparse

HELP = "run the node: a vehicle's trajectories or an arm's joint commands (DDS transport without ROS, or rclpy)"
DESCRIPTION = """\
Run the drive node: subscribe to the configured camera and odometry topics, run the policy at
inference.rate_hz, publish nav_msgs/Path on outputs.trajectory_topic at control.rate_hz (re-timed
to now, in the odom frame, stamped with the inputs' t0), diagnostics on /diagnostics, per-stage
latency on outputs.latency_topic and, when inference.reasoning is on, the reasoning text.

--transport dds talks to a ROS 2 graph without a ROS installation, over Cyclone DDS with the
ROS 2 wire conventions (ROS_DOMAIN_ID is honoured). --transport ros runs the rclpy lifecycle
node (configure + activate) and needs ROS 2. With --use-sim-time the node follows /clock, e.g.
from `vla-ros play --clock`.

With control.mode chunk (a robot arm, e.g. --config config/arm.yaml with a LeRobot pi0 / pi0.5
policy directory) it subscribes to the cameras, sensor_msgs/JointState on arm.joint_state_topic
and the instruction (std_msgs/String) on arm.instruction_topic instead, computes action chunks
asynchronously (real-time chunking joins them) and publishes one joint command per control tick
(50 Hz) as trajectory_msgs/JointTrajectory and/or std_msgs/Float64MultiArray (docs/arm.md).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--transport", choices=("dds", "ros"), default="dds", help="dds (no ROS needed, default) or ros (rclpy)")
    p.add_argument("--config", default=None, help="YAML config (default: built-in defaults = config/drive.yaml)")
    p.add_argument("--model", default=None, help="checkpoint directory or preset such as random:tiny (default: model.path of the config)")
    p.add_argument("--backend", default=None, help="torch | onnxruntime | tensorrt (default: inference.backend)")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: model.device)")
    p.add_argument("--use-sim-time", action="store_true", help="follow /clock instead of the system clock")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds of wall time (default: run until Ctrl-C)")
    p.add_argument("--status-every", type=float, default=5.0, help="print a status line every S seconds (0: never; default 5)")


def run(args: argparse.Namespace) -> int:
    from vla_ros.command_error import CommandError
    from vla_ros.config import load_config

    config = load_config(args.config)
    overrides = {}
    if args.model:
        overrides["model__path"] = args.model
    if args.backend:
        overrides["inference__backend"] = args.backend
    if args.device:
        overrides["model__device"] = args.device
    if overrides:
        config = config.replace(**overrides)
    if args.duration is not None and args.duration <= 0:
        raise CommandError(f"--duration must be > 0, got {args.duration}")
    if args.transport == "ros":
        return _run_rclpy(args, config)
    from vla_ros.ros.dds_node import run_dds_node
    from vla_ros.runtime.policy_process import PolicyProcessError

    try:
        return run_dds_node(config, use_sim_time=args.use_sim_time, duration_s=args.duration, status_every_s=args.status_every)
    except PolicyProcessError as exc:  # the policy process could not load the model
        raise CommandError(str(exc)) from exc


def _run_rclpy(args: argparse.Namespace, config: object) -> int:
    from vla_ros.command_error import CommandError

    try:
        import rclpy  # noqa: F401
    except ImportError as exc:
        raise CommandError("--transport ros needs ROS 2 (rclpy); source your ROS setup or use --transport dds") from exc
    from vla_ros.ros.drive_node import main as drive_main

    model = config.model  # type: ignore[attr-defined]
    ros_args = ["--ros-args", "-p", f"model:={model.path}", "-p", f"backend:={config.inference.backend}",  # type: ignore[attr-defined]
                "-p", f"device:={model.device}"]
    if args.config:
        ros_args += ["-p", f"config:={args.config}"]
    if args.use_sim_time:
        ros_args += ["-p", "use_sim_time:=true"]
    return drive_main(["drive_node", *ros_args], autostart=True, duration_s=args.duration, status_every_s=args.status_every)
