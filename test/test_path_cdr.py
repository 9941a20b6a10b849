"""The array-built nav_msgs/Path CDR equals rosbags' own serialization, byte for byte."""
from __future__ import annotations

import numpy as np
import pytest

from vla_ros.control.fallback import stopping_trajectory
from vla_ros.control.trajectory import PlannedTrajectory, retime
from vla_ros.replay.bag_io import TYPESTORE
from vla_ros.ros import messages
from vla_ros.ros.conversions import path_cdr_message, path_message
from vla_ros.ros.path_cdr import PATH_MSGTYPE, path_cdr
from vla_ros.sensors.ego_buffer import EgoState


@pytest.mark.parametrize("n", [0, 1, 2, 65])
@pytest.mark.parametrize("frame_id", ["odom", "map", "", "a_longer_frame"])  # every string padding case
def test_path_cdr_equals_rosbags(n: int, frame_id: str):
    rng = np.random.default_rng(n + len(frame_id))
    stamp = 1_700_000_123_456_789_012
    stamps = stamp + np.arange(n, dtype=np.int64) * 100_000_000
    xyz = rng.normal(size=(n, 3)) * 50
    quat = rng.normal(size=(n, 4))
    quat /= np.linalg.norm(quat, axis=1, keepdims=True) if n else 1
    poses = [messages.pose_stamped(int(stamps[i]), frame_id, xyz[i], quat[i]) for i in range(n)]
    ref = bytes(TYPESTORE.serialize_cdr(messages.path(stamp, frame_id, poses), PATH_MSGTYPE))
    ours = path_cdr(stamp, frame_id, stamps, xyz, quat)
    assert ours == ref
    back = TYPESTORE.deserialize_cdr(ours, PATH_MSGTYPE)
    assert back.header.frame_id == frame_id and len(back.poses) == n
    if n:
        np.testing.assert_array_equal([p.pose.position.y for p in back.poses], xyz[:, 1])
        assert back.poses[-1].header.stamp.nanosec == int(stamps[-1] % 1_000_000_000)


def test_the_nodes_cdr_path_equals_its_path_message():
    """The DDS node publishes `path_cdr_message`; the rclpy node `path_message`: the same bytes."""
    planned = PlannedTrajectory(t0_ns=1_700_000_000_000_000_000, dt_s=0.1,
                                xyz=np.cumsum(np.tile([[0.8, 0.05, 0.0]], (64, 1)), axis=0),
                                rot=np.tile(np.eye(3), (64, 1, 1)), pose_t0_xyz=np.array([10.0, -3.0, 0.0]),
                                pose_t0_rot=np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), reasoning=None)
    fallback = stopping_trajectory(EgoState(planned.t0_ns, np.array([3.0, 4.0, 0.0]), 0.7, 12.0), planned.t0_ns + 5, 2.0)
    for odom in (retime(planned, planned.t0_ns + 37_000_000),  # between two points: interpolated, in odom
                 retime(planned, planned.t0_ns + 10**11),  # long past the end: one point
                 fallback):  # what the watchdog publishes
        for frame_id in ("odom", "map"):
            ref = bytes(TYPESTORE.serialize_cdr(path_message(odom, frame_id), PATH_MSGTYPE))
            assert path_cdr_message(odom, frame_id) == ref
    assert len(retime(planned, planned.t0_ns + 10**11)) == 1 and len(fallback) > 60
