"""The camera rig: Alpamayo-R1 camera names and fields of view on plausible mounts, pinhole
intrinsics, extrinsics, and the per-pixel rays the renderer precomputes.

Frames: base_link (rear axle on the ground; x forward, y left, z up) and one `<name>_optical`
frame per camera (ROS optical convention: z forward, x right, y down). Cameras have yaw and
pitch but no roll, so every image row below the horizon sees the ground.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraSpec:
    name: str
    hfov_deg: float
    xyz: tuple[float, float, float]  # mount position in base_link (m)
    yaw_deg: float  # left positive
    pitch_deg: float  # down positive

    @property
    def optical_frame(self) -> str:
        return f"{self.name}_optical"


# Windshield cameras behind the mirror, cross cameras at the A-pillars looking 60 deg out.
RIG: dict[str, CameraSpec] = {
    "cross_left": CameraSpec("cross_left", 120.0, (2.0, 0.9, 1.3), 60.0, 8.0),
    "front_wide": CameraSpec("front_wide", 120.0, (1.7, 0.0, 1.45), 0.0, 4.0),
    "cross_right": CameraSpec("cross_right", 120.0, (2.0, -0.9, 1.3), -60.0, 8.0),
    "front_tele": CameraSpec("front_tele", 30.0, (1.7, 0.15, 1.45), 0.0, 1.0),
}

# optical axes (x right, y down, z forward) expressed in the camera body frame (x fwd, y left, z up)
_BODY_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class Intrinsics:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @property
    def hfov_deg(self) -> float:
        return math.degrees(2.0 * math.atan(self.width / (2.0 * self.fx)))


def intrinsics(spec: CameraSpec, width: int, height: int) -> Intrinsics:
    """Square pixels; principal point at the image centre (pixel centres at integer u, v)."""
    fx = (width / 2.0) / math.tan(math.radians(spec.hfov_deg) / 2.0)
    return Intrinsics(width, height, fx, fx, (width - 1) / 2.0, (height - 1) / 2.0)


def rotation(spec: CameraSpec) -> np.ndarray:
    """(3, 3) rotation base_link <- optical."""
    y, p = math.radians(spec.yaw_deg), math.radians(spec.pitch_deg)
    rz = np.array([[math.cos(y), -math.sin(y), 0.0], [math.sin(y), math.cos(y), 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[math.cos(p), 0.0, math.sin(p)], [0.0, 1.0, 0.0], [-math.sin(p), 0.0, math.cos(p)]])
    return rz @ ry @ _BODY_FROM_OPTICAL


def matrix_to_quat(m: np.ndarray) -> tuple[float, float, float, float]:
    """(3, 3) rotation -> quaternion (x, y, z, w), w >= 0."""
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s)
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = (0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s)
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = ((m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s)
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = ((m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s)
    if q[3] < 0:
        q = tuple(-c for c in q)
    return tuple(float(c) for c in q)  # type: ignore[return-value]


def pixel_rays(spec: CameraSpec, width: int, height: int) -> np.ndarray:
    """(H, W, 3) float32 unit ray directions in base_link through every pixel centre."""
    k = intrinsics(spec, width, height)
    u = (np.arange(width, dtype=np.float64) - k.cx) / k.fx
    v = (np.arange(height, dtype=np.float64) - k.cy) / k.fy
    d = np.empty((height, width, 3))
    d[..., 0] = u[None, :]
    d[..., 1] = v[:, None]
    d[..., 2] = 1.0
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return (d @ rotation(spec).T).astype(np.float32)


def project(spec: CameraSpec, width: int, height: int, points_base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) points in base_link -> ((N, 2) pixel coordinates, (N,) depth along the optical z)."""
    k = intrinsics(spec, width, height)
    p = (points_base - np.asarray(spec.xyz)) @ rotation(spec)  # rows: R^T (p - t)
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([k.fx * p[:, 0] / z + k.cx, k.fy * p[:, 1] / z + k.cy], axis=1)
    return uv, z
