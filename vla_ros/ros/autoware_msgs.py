"""autoware_planning_msgs/Trajectory, so Autoware's control stack can consume the node's output
directly. Its definition lives in the shared type store (`vla_ros.ros.messages`), from which the
DDS transport generates its wire type; the rclpy node publishes it when `autoware_planning_msgs`
is installed."""
from __future__ import annotations

from typing import Any

import numpy as np

from vla_ros.control.trajectory import OdomTrajectory
from vla_ros.ros import messages
from vla_ros.ros.messages import AUTOWARE_TRAJECTORY as TRAJECTORY
from vla_ros.ros.messages import TYPESTORE
from vla_ros.sensors.geometry import yaw_to_quat

_POINT = "autoware_planning_msgs/msg/TrajectoryPoint"


def autoware_trajectory(traj: OdomTrajectory, frame_id: str) -> Any:
    """The re-timed trajectory as autoware_planning_msgs/Trajectory: header stamp = t0 of the
    inputs (as on the Path), each point's time_from_start counted from it."""
    t = TYPESTORE.types
    rel_s = (traj.times_ns - traj.times_ns[0]) / 1e9
    heading_rate = np.gradient(np.unwrap(traj.yaw), rel_s) if len(rel_s) > 1 else np.zeros(len(rel_s))
    quats = yaw_to_quat(traj.yaw)
    points = []
    for i in range(len(traj)):
        ahead_ns = int(traj.times_ns[i] - traj.stamp_ns)
        points.append(
            t[_POINT](
                time_from_start=t["builtin_interfaces/msg/Duration"](sec=ahead_ns // 1_000_000_000, nanosec=ahead_ns % 1_000_000_000),
                pose=messages.pose(traj.xyz[i], quats[i]),
                longitudinal_velocity_mps=float(traj.speed[i]),
                lateral_velocity_mps=0.0,
                acceleration_mps2=float(traj.acceleration[i]),
                heading_rate_rps=float(heading_rate[i]),
                front_wheel_angle_rad=0.0,
                rear_wheel_angle_rad=0.0,
            )
        )
    return t[TRAJECTORY](header=messages.header(int(traj.stamp_ns), frame_id), points=points)
