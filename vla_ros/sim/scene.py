"""One instant of the world as the renderer needs it, in the ego (base_link) frame: the stretch
of road around the ego, and boxes (vehicles, signs) with their materials."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vla_ros.sim.road import DASH_PERIOD, SIGN_D, STEP, Road
from vla_ros.sim.world import Timeline, VehicleSnap

WINDOW_BEHIND = 80.0  # m of road kept behind the ego
WINDOW_AHEAD = 800.0
SIGN_RANGE = 350.0  # signs and painted numbers further than this are not drawn
CHECKER = 6.0  # m, grass checker cell (road coordinates)
ROAD_NUMBER_LENGTH = 5.0  # m along the road of a painted number
ROAD_NUMBER_AHEAD = 8.0  # painted this far after the sign

CAR_COLORS = np.array(
    [(200, 30, 35), (30, 60, 150), (225, 225, 225), (35, 35, 40), (150, 150, 155), (20, 110, 60), (210, 160, 30), (100, 50, 130)],
    dtype=np.float32,
)
GLASS = np.array((40, 48, 60), dtype=np.float32)


@dataclass(frozen=True)
class Box:
    """An upright box: centre (3,) and yaw in the ego frame, half extents (3,)."""

    center: np.ndarray
    yaw: float
    half: np.ndarray
    color: np.ndarray  # (3,) float32 RGB
    kind: str = "plain"  # "plain", "body" (brake lights), "cabin" (glass sides), "sign" (textured front)
    braking: bool = False
    sign_kph: int = 0


@dataclass(frozen=True)
class RoadWindow:
    """The centreline from s0 to s0 + (n-1)*STEP in the ego frame, as complex numbers x + iy."""

    s0: float
    points: np.ndarray  # (n,) complex64 centreline points
    tangents_conj: np.ndarray  # (n,) complex64 conjugated unit tangents
    ego_index: float  # fractional window index of the ego's s
    ego_point: complex
    ego_tangent_conj: complex
    dash_phase: float  # s0 modulo the dash period
    checker_phase: float  # s0 modulo two checker cells
    numbers: tuple[tuple[float, int], ...] = ()  # (window-relative s where a painted number starts, km/h)

    @property
    def n(self) -> int:
        return len(self.points)


@dataclass(frozen=True)
class Scene:
    t_ns: int
    road: RoadWindow
    boxes: list[Box] = field(default_factory=list)
    ego_yaw: float = 0.0  # world yaw (for the distant hills)
    sun: np.ndarray = field(default_factory=lambda: np.array([0.3, 0.45, 0.84]))  # ego frame, unit


def road_window(road: Road, ego_x: float, ego_y: float, ego_yaw: float, ego_s: float) -> RoadWindow:
    i0 = max(int((ego_s - WINDOW_BEHIND) / STEP), 0)
    i1 = min(int((ego_s + WINDOW_AHEAD) / STEP) + 1, len(road.s))
    rot = complex(math.cos(-ego_yaw), math.sin(-ego_yaw))
    z = (road.x[i0:i1] - ego_x) + 1j * (road.y[i0:i1] - ego_y)
    pts = (z * rot).astype(np.complex64)
    tan = np.exp(-1j * (road.heading[i0:i1] - ego_yaw)).astype(np.complex64)  # conj of the tangent
    s0 = float(road.s[i0])
    fi = (ego_s - s0) / STEP
    k = min(int(round(fi)), i1 - i0 - 1)
    numbers = []
    for s_lim, kph in zip(road.limit_s[1:], road.limit_kph[1:]):
        at = float(s_lim) + ROAD_NUMBER_AHEAD - s0
        if -ROAD_NUMBER_LENGTH < at + s0 - ego_s < SIGN_RANGE:
            numbers.append((at, int(kph)))
    return RoadWindow(
        s0=s0,
        points=pts,
        tangents_conj=tan,
        ego_index=fi,
        ego_point=complex(pts[k]),
        ego_tangent_conj=complex(tan[k]),
        dash_phase=s0 % DASH_PERIOD,
        checker_phase=s0 % (2 * CHECKER),
        numbers=tuple(numbers),
    )


def _to_ego(x: float, y: float, yaw: float, ex: float, ey: float, eyaw: float) -> tuple[float, float, float]:
    c, s = math.cos(eyaw), math.sin(eyaw)
    dx, dy = x - ex, y - ey
    return c * dx + s * dy, -s * dx + c * dy, yaw - eyaw


def build_scene(timeline: Timeline, t_ns: int) -> Scene:
    return scene_at(timeline.plan.road, t_ns, timeline.ego_at(t_ns), timeline.traffic_at(t_ns))


def scene_at(road: Road, t_ns: int, ego: dict[str, float], traffic: Sequence[VehicleSnap]) -> Scene:
    """The scene for an ego state ({"x", "y", "yaw", "s", ...}) and the vehicles around it."""
    ex, ey, eyaw, es = ego["x"], ego["y"], ego["yaw"], ego["s"]
    boxes: list[Box] = []
    for veh in traffic:
        x, y, yaw = _to_ego(veh.x, veh.y, veh.yaw, ex, ey, eyaw)
        color = CAR_COLORS[veh.color % len(CAR_COLORS)]
        body_h = 0.55 * veh.height if veh.length < 6 else 0.9 * veh.height
        clearance = 0.18
        boxes.append(Box(np.array([x, y, clearance + body_h / 2]), yaw, np.array([veh.length / 2, veh.width / 2, body_h / 2]), color, "body", veh.braking))
        if veh.length < 6:  # cars get a glass cabin; trucks are one tall box with a low cab-less front
            cab_h = veh.height - clearance - body_h
            cab = np.array([x, y, clearance + body_h + cab_h / 2]) + np.array([-0.1 * veh.length * math.cos(yaw), -0.1 * veh.length * math.sin(yaw), 0.0])
            boxes.append(Box(cab, yaw, np.array([0.27 * veh.length, veh.width / 2 - 0.08, cab_h / 2]), color, "cabin"))
        else:
            boxes[-1] = Box(np.array([x, y, clearance + (veh.height - clearance) / 2]), yaw, np.array([veh.length / 2, veh.width / 2, (veh.height - clearance) / 2]), color, "body", veh.braking)
    for s_lim, kph in zip(road.limit_s[1:], road.limit_kph[1:]):
        if not -20.0 < s_lim - es < SIGN_RANGE:
            continue
        sx, sy, sh = road.pose(float(s_lim), SIGN_D)
        x, y, yaw = _to_ego(sx, sy, sh, ex, ey, eyaw)
        boxes.append(Box(np.array([x, y, 1.05]), yaw, np.array([0.05, 0.05, 1.05]), np.array((150, 150, 150), np.float32)))
        boxes.append(Box(np.array([x - 0.08 * math.cos(yaw), y - 0.08 * math.sin(yaw), 2.45]), yaw, np.array([0.03, 0.45, 0.45]),
                         np.array((200, 200, 200), np.float32), "sign", sign_kph=int(kph)))
    sun_world = np.array([0.35, 0.45, 0.82])
    c, s = math.cos(eyaw), math.sin(eyaw)
    sun = np.array([c * sun_world[0] + s * sun_world[1], -s * sun_world[0] + c * sun_world[1], sun_world[2]])
    return Scene(t_ns, road_window(road, ex, ey, eyaw, es), boxes, eyaw, sun / np.linalg.norm(sun))


