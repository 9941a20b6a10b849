"""The evaluation's output bag: input odometry plus, per evaluated tick, the predicted path, the
recorded future, the baselines and the reasoning text, to scrub through in Foxglove or RViz.

All paths are nav_msgs/Path in the odometry frame, stamped t0, starting with the t0 pose; each
pose is stamped with its own time (t0 + i*dt). Per-tick messages are logged at the tick's
receive time, so they appear in playback when the prediction would have been available.
The result is one plain MCAP file (rosbags writes a rosbag2 directory; the file is moved out).
"""
from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vla_ros.control.trajectory import PlannedTrajectory
from vla_ros.replay.bag_io import BagMessage, BagWriter
from vla_ros.ros import messages
from vla_ros.ros.messages import TF_TOPIC
from vla_ros.ros.path_cdr import PATH_MSGTYPE, path_cdr
from vla_ros.sensors.geometry import yaw_to_quat

if TYPE_CHECKING:
    from vla_ros.replay.tick_record import TickRecord

GROUND_TRUTH_TOPIC = "/vla/ground_truth_path"
BASELINE_TOPIC_PREFIX = "/vla/baseline/"


def _path_msg(t0_ns: int, dt_s: float, frame_id: str, xyz: np.ndarray, yaw: np.ndarray) -> bytes:
    """xyz (N+1, 3) / yaw (N+1,) in odom, first entry at t0 -> nav_msgs/Path CDR bytes."""
    stamps = t0_ns + np.arange(len(xyz), dtype=np.int64) * round(dt_s * 1e9)
    return path_cdr(t0_ns, frame_id, stamps, xyz, yaw_to_quat(yaw))


def _local_path(rec: "TickRecord", local_xyz: np.ndarray, rot: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """A (T, 3) path in the t0 ego frame -> odom xyz (T+1, 3), yaw (T+1,) with t0 prepended."""
    traj = PlannedTrajectory(rec.t0_ns, rec.dt_s, local_xyz, rec.pose_t0_xyz, rec.pose_t0_rot, rot=rot)
    return traj.in_odom()


def write_prediction_bag(
    path: str | Path,
    odometry_topic: str,
    odometry: Sequence[BagMessage],
    records: Sequence["TickRecord"],
    frame_id: str,
    trajectory_topic: str = "/vla/trajectory",
    reasoning_topic: str = "/vla/reasoning",
) -> dict[str, int]:
    """Write `path` (a .mcap file, replaced if present). Returns messages per topic."""
    out = Path(path)
    events: list[tuple[int, int, str, Any]] = [(m.log_time_ns, 0, odometry_topic, m.msg) for m in odometry if m.msg is not None]
    # odom -> base_link on /tf, so Foxglove/RViz place the car (and the input bag's cameras) in odom
    events += [(m.log_time_ns, 0, TF_TOPIC, messages.odometry_tf(m.msg)) for m in odometry
               if getattr(m.msg, "__msgtype__", "") == "nav_msgs/msg/Odometry"]  # a misconfigured topic may hold anything
    for rec in records:
        xyz, yaw = _local_path(rec, rec.pred_xyz[0], rec.pred_rot[0] if rec.pred_rot is not None else None)
        events.append((rec.tick_ns, 1, trajectory_topic, _path_msg(rec.t0_ns, rec.dt_s, frame_id, xyz, yaw)))
        xyz, yaw = _local_path(rec, rec.future.xyz, rec.future.rot)
        events.append((rec.tick_ns, 2, GROUND_TRUTH_TOPIC, _path_msg(rec.t0_ns, rec.dt_s, frame_id, xyz, yaw)))
        for j, (name, pred) in enumerate(sorted(rec.baselines.items())):
            xyz, yaw = _local_path(rec, pred, None)
            events.append((rec.tick_ns, 3 + j, BASELINE_TOPIC_PREFIX + name, _path_msg(rec.t0_ns, rec.dt_s, frame_id, xyz, yaw)))
        if rec.reasoning is not None:
            events.append((rec.tick_ns, 9, reasoning_topic, messages.string(rec.reasoning)))
    events.sort(key=lambda e: (e[0], e[1]))
    # rosbags names the storage file after its directory and records that name in the file's
    # embedded metadata: write into <tmp>/<stem>/<stem>.mcap so the name is the final one.
    tmp_root = out.with_name(f".{out.name}.writing")
    if tmp_root.exists():
        shutil.rmtree(tmp_root)
    tmp = tmp_root / out.stem
    tmp_root.mkdir(parents=True)
    counts: dict[str, int] = {}
    with BagWriter(tmp, "mcap") as bag:
        for log_ns, _, topic, msg in events:
            if isinstance(msg, bytes):  # a path, serialized already
                bag.write_raw(topic, PATH_MSGTYPE, msg, log_ns)
            else:
                bag.write(topic, msg, log_ns)
            counts[topic] = counts.get(topic, 0) + 1
    (written,) = list(tmp.glob("*.mcap"))
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(written), str(out))
    shutil.rmtree(tmp_root)
    return counts
