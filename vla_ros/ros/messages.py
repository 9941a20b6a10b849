"""Standard ROS 2 messages as plain Python objects (the classes of the rosbags type store), built
from numpy data.

These objects are the one message representation inside vla_ros: bags store them, the DDS
transport puts them on the wire, and the rclpy adapter copies them field by field into rclpy
messages (the field names are the ROS ones). The ROS 2 Humble definitions are used; Humble and
Jazzy put the same standard messages on the wire.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)

# Beyond the standard set: autoware_planning_msgs/Trajectory (Autoware Universe field layout),
# which the node also publishes for Autoware's controllers.
AUTOWARE_TRAJECTORY = "autoware_planning_msgs/msg/Trajectory"
TYPESTORE.register(
    get_types_from_msg(
        """
builtin_interfaces/Duration time_from_start
geometry_msgs/Pose pose
float32 longitudinal_velocity_mps
float32 lateral_velocity_mps
float32 acceleration_mps2
float32 heading_rate_rps
float32 front_wheel_angle_rad
float32 rear_wheel_angle_rad
""",
        "autoware_planning_msgs/msg/TrajectoryPoint",
    )
)
TYPESTORE.register(
    get_types_from_msg("std_msgs/Header header\nautoware_planning_msgs/TrajectoryPoint[] points\n", AUTOWARE_TRAJECTORY)
)
_T = TYPESTORE.types


def time_msg(stamp_ns: int) -> Any:
    return _T["builtin_interfaces/msg/Time"](sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))


def header(stamp_ns: int, frame_id: str) -> Any:
    return _T["std_msgs/msg/Header"](stamp=time_msg(stamp_ns), frame_id=frame_id)


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """uint8 (H, W, 3) RGB -> JPEG bytes (deterministic for the same input and quality)."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def encode_png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def compressed_image(stamp_ns: int, frame_id: str, data: bytes, fmt: str = "jpeg") -> Any:
    return _T["sensor_msgs/msg/CompressedImage"](
        header=header(stamp_ns, frame_id), format=fmt, data=np.frombuffer(data, dtype=np.uint8)
    )


def raw_image(stamp_ns: int, frame_id: str, pixels: np.ndarray, encoding: str, step: int | None = None) -> Any:
    """sensor_msgs/Image from (H, W) or (H, W, C) uint8 pixels already in `encoding`'s layout."""
    h, w = pixels.shape[:2]
    data = np.ascontiguousarray(pixels).reshape(-1).view(np.uint8)
    row = data.size // h
    return _T["sensor_msgs/msg/Image"](
        header=header(stamp_ns, frame_id),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=row if step is None else step,
        data=data,
    )


def vector3(x: float, y: float, z: float) -> Any:
    return _T["geometry_msgs/msg/Vector3"](x=float(x), y=float(y), z=float(z))


def pose(xyz: Sequence[float], quat_xyzw: Sequence[float]) -> Any:
    return _T["geometry_msgs/msg/Pose"](
        position=_T["geometry_msgs/msg/Point"](x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])),
        orientation=_T["geometry_msgs/msg/Quaternion"](
            x=float(quat_xyzw[0]), y=float(quat_xyzw[1]), z=float(quat_xyzw[2]), w=float(quat_xyzw[3])
        ),
    )


def odometry(
    stamp_ns: int,
    xyz: Sequence[float],
    quat_xyzw: Sequence[float],
    linear: Sequence[float] = (0.0, 0.0, 0.0),
    angular: Sequence[float] = (0.0, 0.0, 0.0),
    frame_id: str = "odom",
    child_frame_id: str = "base_link",
) -> Any:
    """nav_msgs/Odometry; twist in the child (base_link) frame as REP 105 says."""
    cov = np.zeros(36, dtype=np.float64)
    return _T["nav_msgs/msg/Odometry"](
        header=header(stamp_ns, frame_id),
        child_frame_id=child_frame_id,
        pose=_T["geometry_msgs/msg/PoseWithCovariance"](pose=pose(xyz, quat_xyzw), covariance=cov),
        twist=_T["geometry_msgs/msg/TwistWithCovariance"](
            twist=_T["geometry_msgs/msg/Twist"](linear=vector3(*linear), angular=vector3(*angular)), covariance=cov.copy()
        ),
    )


def string(text: str) -> Any:
    return _T["std_msgs/msg/String"](data=text)


def transform_stamped(stamp_ns: int, parent: str, child: str, xyz: Sequence[float], quat_xyzw: Sequence[float]) -> Any:
    return _T["geometry_msgs/msg/TransformStamped"](
        header=header(stamp_ns, parent),
        child_frame_id=child,
        transform=_T["geometry_msgs/msg/Transform"](
            translation=vector3(*xyz),
            rotation=_T["geometry_msgs/msg/Quaternion"](
                x=float(quat_xyzw[0]), y=float(quat_xyzw[1]), z=float(quat_xyzw[2]), w=float(quat_xyzw[3])
            ),
        ),
    )


# tf2's topics: dynamic transforms, and static ones (published once, latched)
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"


def tf_message(transforms: Sequence[Any]) -> Any:
    return _T["tf2_msgs/msg/TFMessage"](transforms=list(transforms))


def odometry_tf(odom: Any) -> Any:
    """The transform an odometry message states (header.frame_id -> child_frame_id, e.g. odom ->
    base_link) as a /tf message, so viewers can place the car and its cameras in the odom frame."""
    p, q = odom.pose.pose.position, odom.pose.pose.orientation
    stamp_ns = odom.header.stamp.sec * 1_000_000_000 + odom.header.stamp.nanosec
    return tf_message([transform_stamped(stamp_ns, odom.header.frame_id, odom.child_frame_id, (p.x, p.y, p.z), (q.x, q.y, q.z, q.w))])


def camera_info(stamp_ns: int, frame_id: str, width: int, height: int, fx: float, fy: float, cx: float, cy: float) -> Any:
    """Pinhole CameraInfo without distortion ("plumb_bob" with zero coefficients)."""
    k = np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], dtype=np.float64)
    p = np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], dtype=np.float64)
    return _T["sensor_msgs/msg/CameraInfo"](
        header=header(stamp_ns, frame_id),
        height=height,
        width=width,
        distortion_model="plumb_bob",
        d=np.zeros(5, dtype=np.float64),
        k=k,
        r=np.eye(3, dtype=np.float64).reshape(-1),
        p=p,
        binning_x=0,
        binning_y=0,
        roi=_T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def pose_stamped(stamp_ns: int, frame_id: str, xyz: Sequence[float], quat_xyzw: Sequence[float]) -> Any:
    return _T["geometry_msgs/msg/PoseStamped"](header=header(stamp_ns, frame_id), pose=pose(xyz, quat_xyzw))


def path(stamp_ns: int, frame_id: str, poses: Sequence[Any]) -> Any:
    return _T["nav_msgs/msg/Path"](header=header(stamp_ns, frame_id), poses=list(poses))


def key_value(key: str, value: str) -> Any:
    return _T["diagnostic_msgs/msg/KeyValue"](key=key, value=value)


# diagnostic_msgs/DiagnosticStatus levels
DIAG_OK, DIAG_WARN, DIAG_ERROR, DIAG_STALE = 0, 1, 2, 3


def diagnostic_status(name: str, level: int, message: str, values: dict[str, str], hardware_id: str = "") -> Any:
    return _T["diagnostic_msgs/msg/DiagnosticStatus"](
        level=level,
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[key_value(k, str(v)) for k, v in values.items()],
    )


def diagnostic_array(stamp_ns: int, statuses: Sequence[Any]) -> Any:
    return _T["diagnostic_msgs/msg/DiagnosticArray"](header=header(stamp_ns, ""), status=list(statuses))


def float64_multiarray(labels: Sequence[str], values: Sequence[float]) -> Any:
    """One dimension whose label lists the entries ("a,b,c"), so a reader can tell them apart."""
    dim = _T["std_msgs/msg/MultiArrayDimension"](label=",".join(labels), size=len(values), stride=len(values))
    layout = _T["std_msgs/msg/MultiArrayLayout"](dim=[dim], data_offset=0)
    return _T["std_msgs/msg/Float64MultiArray"](layout=layout, data=np.asarray(values, dtype=np.float64))


def clock(stamp_ns: int) -> Any:
    return _T["rosgraph_msgs/msg/Clock"](clock=time_msg(stamp_ns))


JOINT_STATE = "sensor_msgs/msg/JointState"
JOINT_TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"


def duration(seconds: float) -> Any:
    ns = int(round(seconds * 1e9))
    return _T["builtin_interfaces/msg/Duration"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def joint_state(stamp_ns: int, names: Sequence[str], position: Sequence[float], velocity: Sequence[float] = (),
                effort: Sequence[float] = ()) -> Any:
    return _T[JOINT_STATE](header=header(stamp_ns, ""), name=list(names), position=np.asarray(position, dtype=np.float64),
                           velocity=np.asarray(velocity, dtype=np.float64), effort=np.asarray(effort, dtype=np.float64))


def joint_trajectory_point(positions: Sequence[float], velocities: Sequence[float], time_from_start_s: float) -> Any:
    empty = np.zeros(0, dtype=np.float64)
    return _T["trajectory_msgs/msg/JointTrajectoryPoint"](
        positions=np.asarray(positions, dtype=np.float64), velocities=np.asarray(velocities, dtype=np.float64),
        accelerations=empty, effort=empty, time_from_start=duration(time_from_start_s))


def joint_trajectory(stamp_ns: int, joint_names: Sequence[str], points: Sequence[Any], frame_id: str = "") -> Any:
    """trajectory_msgs/JointTrajectory; header.stamp is when its first point's clock starts."""
    return _T[JOINT_TRAJECTORY](header=header(stamp_ns, frame_id), joint_names=list(joint_names), points=list(points))
