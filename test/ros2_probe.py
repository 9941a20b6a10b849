"""A plain rclpy subscriber for the real-ROS tests: prints one JSON line per message received on
the drive node's trajectory (or an arm's joint trajectory) and diagnostics topics (run as its own
process, under ROS 2).

    python test/ros2_probe.py --trajectory /vla/trajectory --seconds 60
    python test/ros2_probe.py --joint-trajectory /joint_trajectory_controller/joint_trajectory
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Path
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile
from trajectory_msgs.msg import JointTrajectory


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--trajectory", default="/vla/trajectory")
    p.add_argument("--joint-trajectory", default="", help="also an arm's trajectory_msgs/JointTrajectory topic")
    p.add_argument("--diagnostics", default="/diagnostics")
    p.add_argument("--seconds", type=float, default=60.0)
    args = p.parse_args()
    rclpy.init()
    node = Node("vla_ros_test_probe")

    def emit(obj: dict) -> None:
        obj["t"] = time.monotonic()
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def on_path(msg: Path) -> None:
        first = msg.poses[0].pose.position if msg.poses else None
        emit({"topic": "path", "frame_id": msg.header.frame_id, "stamp_ns": msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec,
              "n_poses": len(msg.poses), "first_xy": None if first is None else [first.x, first.y]})

    def on_diag(msg: DiagnosticArray) -> None:
        emit({"topic": "diagnostics", "statuses": {s.name: {"level": int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level),
                                                            "message": s.message, "values": {kv.key: kv.value for kv in s.values}}
                                                   for s in msg.status}})

    def on_joints(msg: JointTrajectory) -> None:
        point = msg.points[0] if msg.points else None
        emit({"topic": "joints", "stamp_ns": msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, "joint_names": list(msg.joint_names),
              "positions": None if point is None else list(point.positions),
              "velocities": None if point is None else list(point.velocities), "n_points": len(msg.points)})

    node.create_subscription(Path, args.trajectory, on_path, QoSProfile(depth=10))
    if args.joint_trajectory:
        node.create_subscription(JointTrajectory, args.joint_trajectory, on_joints, QoSProfile(depth=50))
    node.create_subscription(DiagnosticArray, args.diagnostics, on_diag, QoSProfile(depth=10))
    emit({"topic": "ready"})
    end = time.monotonic() + args.seconds
    try:
        while rclpy.ok() and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
