"""Projecting ego-frame points into a recorded camera image, from the bag's own calibration:
sensor_msgs/CameraInfo (pinhole K) and the static transforms on /tf_static (base_link <- camera
optical frame). Used by the report to draw the predicted path on the front camera image.

Distortion is ignored: the overlay is a visual aid, not a measurement.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_ros.config import CameraConfig
from vla_ros.replay.bag_io import BagInfo, read_messages
from vla_ros.ros.messages import TF_STATIC_TOPIC
from vla_ros.sensors.geometry import quat_to_matrix

_LOG = logging.getLogger("vla_ros.replay")

CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"


@dataclass(frozen=True)
class CameraModel:
    """Pinhole camera: K for a (height, width) image; pose of the optical frame in base_link
    (p_base = rot @ p_optical + xyz). Optical frame: z forward, x right, y down."""

    camera: str
    width: int
    height: int
    k: np.ndarray  # (3, 3)
    rot: np.ndarray  # (3, 3)
    xyz: np.ndarray  # (3,)

    def project(self, points: np.ndarray, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) points in base_link -> (N, 2) pixel coordinates in an image of `image_hw`
        (the recorded image resized; K is scaled to it) and (N,) depth along the optical axis."""
        p = (np.asarray(points, dtype=np.float64) - self.xyz) @ self.rot  # rows: R^T (p - t)
        z = p[:, 2]
        safe = np.where(np.abs(z) > 1e-9, z, 1e-9)
        u = self.k[0, 0] * p[:, 0] / safe + self.k[0, 2]
        v = self.k[1, 1] * p[:, 1] / safe + self.k[1, 2]
        sy, sx = image_hw[0] / self.height, image_hw[1] / self.width
        # Scale about pixel edges, not centres: pixel centre c maps to (c + 0.5) * s - 0.5.
        return np.stack([(u + 0.5) * sx - 0.5, (v + 0.5) * sy - 0.5], axis=1), z


def _norm_frame(name: str) -> str:
    return name.lstrip("/")


class StaticTransforms:
    """A tree of static transforms: child -> (parent, rot, xyz) with p_parent = rot p_child + xyz."""

    def __init__(self) -> None:
        self.edges: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}

    def add(self, tf_msg: Any) -> None:
        for t in getattr(tf_msg, "transforms", []):
            q = t.transform.rotation
            tr = t.transform.translation
            rot = quat_to_matrix(np.array([q.x, q.y, q.z, q.w], dtype=np.float64))
            self.edges[_norm_frame(t.child_frame_id)] = (_norm_frame(t.header.frame_id), rot, np.array([tr.x, tr.y, tr.z]))

    def _to_root(self, frame: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Every ancestor a of `frame` (itself included) -> pose of `frame` in a."""
        rot, xyz = np.eye(3), np.zeros(3)
        out = {frame: (rot, xyz)}
        seen = {frame}
        while frame in self.edges:
            parent, r, t = self.edges[frame]
            rot, xyz = r @ rot, r @ xyz + t
            if parent in seen:  # a cycle in a malformed /tf_static
                break
            seen.add(parent)
            out[parent] = (rot, xyz)
            frame = parent
        return out

    def lookup(self, target: str, source: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Pose of `source` in `target` (p_target = rot p_source + xyz), or None if unconnected."""
        up_src = self._to_root(_norm_frame(source))
        up_tgt = self._to_root(_norm_frame(target))
        for frame, (r_s, t_s) in up_src.items():
            if frame in up_tgt:
                r_t, t_t = up_tgt[frame]
                return r_t.T @ r_s, r_t.T @ (t_s - t_t)
        return None


def camera_info_topic(camera: CameraConfig, info: BagInfo) -> str | None:
    """The CameraInfo topic of `camera`: the configured one, else the CameraInfo topic in the bag
    sharing the longest topic prefix with the image topic (e.g. /cameras/front_wide/...)."""
    if camera.camera_info_topic:
        return camera.camera_info_topic if camera.camera_info_topic in info.message_counts else None
    image_parts = camera.topic.strip("/").split("/")
    best, best_score = None, 0
    for topic, msgtype in sorted(info.topic_types.items()):
        if msgtype != CAMERA_INFO_TYPE:
            continue
        parts = topic.strip("/").split("/")
        score = 0
        for a, b in zip(parts, image_parts):
            if a != b:
                break
            score += 1
        if camera.name in parts:
            score += 1
        if score > best_score:
            best, best_score = topic, score
    return best


def load_camera_model(bag: str | Path, info: BagInfo, camera: CameraConfig, base_frame: str) -> CameraModel | None:
    """The camera's model from the bag, or None (logged) if CameraInfo or /tf_static is missing."""
    topic = camera_info_topic(camera, info)
    if topic is None or info.topic_types.get(TF_STATIC_TOPIC) is None:
        _LOG.info("no CameraInfo for %s or no %s in %s: gallery images without projected paths", camera.name, TF_STATIC_TOPIC, bag)
        return None
    cam_info = None
    tf = StaticTransforms()
    for m in read_messages(bag, [topic, TF_STATIC_TOPIC]):
        if m.msg is None:
            continue
        if m.topic == TF_STATIC_TOPIC:
            tf.add(m.msg)
        elif cam_info is None:
            cam_info = m.msg
    if cam_info is None or int(cam_info.width) <= 0 or int(cam_info.height) <= 0:
        return None
    k = np.asarray(cam_info.k, dtype=np.float64).reshape(3, 3)
    if not (np.all(np.isfinite(k)) and k[0, 0] > 0 and k[1, 1] > 0):
        return None
    frame = _norm_frame(cam_info.header.frame_id)
    pose = tf.lookup(base_frame, frame) if frame else None
    if pose is None:
        _LOG.info("no static transform %s <- %s in %s: gallery images without projected paths", base_frame, frame, bag)
        return None
    return CameraModel(camera.name, int(cam_info.width), int(cam_info.height), k, pose[0], pose[1])
