"""Vehicle footprints as oriented rectangles, and the geometry the metrics need: overlap (the
separating-axis test, which also holds for a zero-width rectangle such as a bumper line) and the
distance between two rectangles."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vla_ros.sim.ego import EGO_WIDTH, FRONT_OVERHANG, REAR_OVERHANG, WHEELBASE

EGO_LENGTH = WHEELBASE + FRONT_OVERHANG + REAR_OVERHANG
EGO_CENTER_AHEAD = (WHEELBASE + FRONT_OVERHANG - REAR_OVERHANG) / 2  # footprint centre ahead of base_link


@dataclass(frozen=True)
class Rect:
    cx: float
    cy: float
    yaw: float
    half_length: float
    half_width: float

    def axes(self) -> tuple[tuple[float, float], tuple[float, float]]:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return (c, s), (-s, c)

    def corners(self) -> np.ndarray:
        """(4, 2): front left, front right, rear right, rear left."""
        (ux, uy), (vx, vy) = self.axes()
        out = []
        for a, b in ((1, 1), (1, -1), (-1, -1), (-1, 1)):
            out.append((self.cx + a * self.half_length * ux + b * self.half_width * vx,
                        self.cy + a * self.half_length * uy + b * self.half_width * vy))
        return np.array(out)


def ego_rect(x: float, y: float, yaw: float) -> Rect:
    """The ego's footprint from its base_link (rear axle) pose."""
    return Rect(x + EGO_CENTER_AHEAD * math.cos(yaw), y + EGO_CENTER_AHEAD * math.sin(yaw), yaw, EGO_LENGTH / 2, EGO_WIDTH / 2)


def bumper(rect: Rect, front: bool) -> Rect:
    """The front (or rear) edge of a footprint as a zero-length rectangle."""
    sign = 1.0 if front else -1.0
    c, s = math.cos(rect.yaw), math.sin(rect.yaw)
    return Rect(rect.cx + sign * rect.half_length * c, rect.cy + sign * rect.half_length * s, rect.yaw, 0.0, rect.half_width)


def _radius(r: Rect, ax: float, ay: float) -> float:
    (ux, uy), (vx, vy) = r.axes()
    return r.half_length * abs(ux * ax + uy * ay) + r.half_width * abs(vx * ax + vy * ay)


def overlaps(a: Rect, b: Rect) -> bool:
    """True when the rectangles intersect or touch (separating-axis theorem)."""
    dx, dy = b.cx - a.cx, b.cy - a.cy
    for ax, ay in (*a.axes(), *b.axes()):
        if abs(dx * ax + dy * ay) > _radius(a, ax, ay) + _radius(b, ax, ay):
            return False
    return True


def _point_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances (P,) from points p (P, 2) to the segment a-b."""
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.hypot(*(p - (a + t[:, None] * ab)).T)


def distance(a: Rect, b: Rect) -> float:
    """Distance between two rectangles: 0 when they overlap."""
    if overlaps(a, b):
        return 0.0
    ca, cb = a.corners(), b.corners()
    best = math.inf
    for p, q in ((ca, cb), (cb, ca)):
        for i in range(4):
            best = min(best, float(_point_segment(p, q[i], q[(i + 1) % 4]).min()))
    return best
