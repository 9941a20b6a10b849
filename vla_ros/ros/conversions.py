"""Conversions between the node core's data and ROS messages (field names as in ROS 2)."""
from __future__ import annotations

from typing import Any

import numpy as np

from vla_ros.control.trajectory import EgoState, OdomTrajectory
from vla_ros.ros import messages
from vla_ros.ros.path_cdr import path_cdr
from vla_ros.sensors.ego_buffer import pose_from_odometry
from vla_ros.sensors.geometry import yaw_to_quat
from vla_ros.sensors.stamps import stamp_ns

# Order of the entries of the latency topic (std_msgs/Float64MultiArray); also written into
# layout.dim[0].label so a subscriber can check it.
LATENCY_FIELDS = (
    "t0_s",
    "stack_ms",
    "preprocess_ms",
    "vision_ms",
    "prefill_ms",
    "reasoning_ms",
    "denoise_ms",
    "decode_ms",
    "policy_total_ms",
    "input_to_output_ms",
    "start_delay_ms",
    "policy_call_ms",
)


def ego_state_from_odometry(msg: Any) -> EgoState:
    """nav_msgs/Odometry -> EgoState (yaw from the orientation, speed from twist.linear.x).
    Raises ValueError/StampError for unusable messages."""
    xyz, quat = pose_from_odometry(msg)
    x, y, z, w = quat
    yaw = float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))
    try:
        speed = float(msg.twist.twist.linear.x)
    except AttributeError:
        speed = 0.0
    if not np.isfinite(speed):
        raise ValueError("twist contains NaN or inf")
    return EgoState(stamp_ns(msg), xyz, yaw, speed)


def path_message(traj: OdomTrajectory, frame_id: str) -> Any:
    """nav_msgs/Path: header stamp = the inputs' t0, each pose stamped at its own future time."""
    quats = yaw_to_quat(traj.yaw)
    poses = [messages.pose_stamped(int(t), frame_id, xyz, q) for t, xyz, q in zip(traj.times_ns, traj.xyz, quats)]
    return messages.path(int(traj.stamp_ns), frame_id, poses)


def path_cdr_message(traj: OdomTrajectory, frame_id: str) -> bytes:
    """The same nav_msgs/Path as `path_message`, serialized straight to CDR bytes (for transports
    that write bytes, such as DDS): no pose objects to build and serialize one by one, work the
    control tick would otherwise do holding the interpreter lock before the path goes out."""
    return path_cdr(int(traj.stamp_ns), frame_id, traj.times_ns, traj.xyz, yaw_to_quat(traj.yaw))


def latency_message(values: dict[str, float]) -> Any:
    return messages.float64_multiarray(LATENCY_FIELDS, [float(values.get(k, float("nan"))) for k in LATENCY_FIELDS])
