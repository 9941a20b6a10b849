"""Conversions between the node core's data and ROS messages (field names as in ROS 2)."""
from __future__ import annotations

from typing import Any

from vla_ros.control.trajectory import OdomTrajectory
from vla_ros.ros import messages
from vla_ros.ros.path_cdr import path_cdr
from vla_ros.sensors.geometry import yaw_to_quat

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
