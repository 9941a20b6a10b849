"""Roads: a centreline integrated from a piecewise-linear curvature profile (straights, arcs and
clothoid transitions), sampled every STEP metres, with two lanes in the driving direction and
speed-limit sections.

Frenet coordinates: `s` is arc length along the centreline, `d` the signed lateral offset (left
positive). The centreline is the dashed line between the two lanes; lane 0 (right, the ego's)
has its centre at d = -LANE_WIDTH/2, lane 1 (left, the overtaking lane) at +LANE_WIDTH/2.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STEP = 0.5  # m between centreline samples
LANE_WIDTH = 3.5
EDGE_D = LANE_WIDTH  # solid edge lines at d = ±EDGE_D
SHOULDER = 0.6  # asphalt beyond the edge lines
LINE_HALF_WIDTH = 0.075
DASH_LENGTH = 4.0  # centre line: DASH_LENGTH paint every DASH_PERIOD metres
DASH_PERIOD = 12.0
SIGN_D = -(EDGE_D + SHOULDER + 1.4)  # speed-limit signs stand right of the road


def lane_d(lane: int) -> float:
    """Lateral offset of a lane centre: lane 0 -> -1.75 m (right), lane 1 -> +1.75 m."""
    return (lane - 0.5) * LANE_WIDTH


@dataclass(frozen=True)
class CurvePiece:
    """A stretch of road whose curvature goes linearly from k0 to k1 (1/m, left positive)."""

    length: float
    k0: float
    k1: float


class Road:
    """Centreline table plus speed-limit sections. `limits` are (start s, km/h), sorted by s."""

    def __init__(self, pieces: Sequence[CurvePiece], limits: Sequence[tuple[float, int]]) -> None:
        if not pieces:
            raise ValueError("a road needs at least one piece")
        knot_s = [0.0]
        knot_k = [pieces[0].k0]
        for p in pieces:
            if abs(p.k0 - knot_k[-1]) > 1e-12:  # a jump in curvature: two knots a hair apart
                knot_s.append(knot_s[-1] + 1e-6)
                knot_k.append(p.k0)
            knot_s.append(knot_s[-1] + p.length)
            knot_k.append(p.k1)
        n = int(knot_s[-1] // STEP) + 1
        self.s = np.arange(n, dtype=np.float64) * STEP
        self.kappa = np.interp(self.s, knot_s, knot_k)
        # Trapezoidal heading, midpoint-heading positions: error O(kappa^2 STEP^3) per step.
        dh = (self.kappa[1:] + self.kappa[:-1]) * 0.5 * STEP
        self.heading = np.concatenate([[0.0], np.cumsum(dh)])
        mid = self.heading[:-1] + dh * 0.5
        self.x = np.concatenate([[0.0], np.cumsum(np.cos(mid) * STEP)])
        self.y = np.concatenate([[0.0], np.cumsum(np.sin(mid) * STEP)])
        self.length = float(self.s[-1])
        lim = sorted(limits)
        if not lim or lim[0][0] > 0:
            raise ValueError("speed limits must start at s = 0")
        self.limit_s = np.array([a for a, _ in lim], dtype=np.float64)
        self.limit_kph = np.array([b for _, b in lim], dtype=np.int64)

    # -- lookups ---------------------------------------------------------------------------

    def _frac(self, s: float) -> tuple[int, float]:
        f = min(max(s / STEP, 0.0), len(self.s) - 1.000001)
        i = int(f)
        return i, f - i

    def centre(self, s: float) -> tuple[float, float, float]:
        """(x, y, heading) of the centreline at s (linear interpolation between samples)."""
        i, a = self._frac(s)
        return (
            float(self.x[i] + a * (self.x[i + 1] - self.x[i])),
            float(self.y[i] + a * (self.y[i + 1] - self.y[i])),
            float(self.heading[i] + a * (self.heading[i + 1] - self.heading[i])),
        )

    def pose(self, s: float, d: float) -> tuple[float, float, float]:
        """World (x, y, heading) of the point at Frenet (s, d)."""
        x, y, h = self.centre(s)
        return x - d * np.sin(h), y + d * np.cos(h), h

    def curvature(self, s: float | np.ndarray) -> np.ndarray | float:
        out = np.interp(s, self.s, self.kappa)
        return float(out) if np.ndim(out) == 0 else out

    def project(self, x: float, y: float, s_guess: float) -> tuple[float, float]:
        """Frenet (s, d) of a world point near the road, by Newton steps from s_guess."""
        s = s_guess
        d = 0.0
        for _ in range(6):
            cx, cy, h = self.centre(s)
            ex, ey = x - cx, y - cy
            ds = ex * np.cos(h) + ey * np.sin(h)
            d = -ex * np.sin(h) + ey * np.cos(h)
            s = min(max(s + ds, 0.0), self.length)
            if abs(ds) < 1e-6:
                break
        return float(s), float(d)

    def speed_limit_kph(self, s: float | np.ndarray) -> np.ndarray | int:
        idx = np.searchsorted(self.limit_s, s, side="right") - 1
        out = self.limit_kph[np.maximum(idx, 0)]
        return int(out) if np.ndim(out) == 0 else out

    def next_limit_change(self, s: float) -> tuple[float, int] | None:
        """(s, km/h) of the first limit change strictly ahead of s, or None."""
        i = int(np.searchsorted(self.limit_s, s, side="right"))
        if i >= len(self.limit_s):
            return None
        return float(self.limit_s[i]), int(self.limit_kph[i])

    def previous_limit_change(self, s: float) -> tuple[float, int, int] | None:
        """(s, old km/h, new km/h) of the last limit change at or behind s (not the start)."""
        i = int(np.searchsorted(self.limit_s, s, side="right")) - 1
        if i <= 0:
            return None
        return float(self.limit_s[i]), int(self.limit_kph[i - 1]), int(self.limit_kph[i])
