"""The ego vehicle: a kinematic bicycle (reference point: rear axle = base_link) driven by an
expert: pure pursuit on the lane centre, a speed planner for curvature and speed limits ahead,
and the IDM behind a leader. A little human noise (lateral wander, a varying speed preference,
steering jitter) keeps trajectories from being trivially smooth."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vla_ros.sim.road import Road, lane_d
from vla_ros.sim.traffic import MAX_BRAKE, idm_interaction

WHEELBASE = 2.8
FRONT_OVERHANG = 0.95  # front bumper is WHEELBASE + FRONT_OVERHANG ahead of base_link
REAR_OVERHANG = 0.95
EGO_WIDTH = 1.9
LAT_ACCEL = 1.8  # m/s^2 the expert accepts in curves
COMFORT_DECEL = 1.3  # m/s^2 for planned slow-downs (curves, lower limits)
MAX_ACCEL = 1.6
MAX_STEER = 0.6  # rad
STEER_RATE = 0.7  # rad/s
PLAN_HORIZON = 250.0  # m of road the speed planner looks at
PLAN_STEP = 2.0


@dataclass
class EgoState:
    x: float
    y: float
    yaw: float
    v: float
    a: float = 0.0
    steer: float = 0.0
    s: float = 0.0  # Frenet on the road
    d: float = 0.0

    @property
    def yaw_rate(self) -> float:
        return self.v * math.tan(self.steer) / WHEELBASE


class ExpertDriver:
    """Lateral and longitudinal control. `reason` says which constraint set the speed last:
    'free', 'curve', 'limit' or 'lead'."""

    def __init__(self, road: Road, rng: np.random.Generator, lane: int = 0) -> None:
        self.road = road
        self.rng = rng
        self.lane = lane
        self.offset = 0.0  # OU lateral wander (m)
        self.speed_pref = 1.0  # OU multiplier on the speed limit
        self.v_plan = 0.0
        self.reason = "free"
        self.plan_reason = "free"

    def plan_speed(self, ego: EgoState) -> float:
        """Highest speed now that still lets the ego meet every curve and limit ahead braking at
        COMFORT_DECEL (the 'speed envelope'). Sets `reason`."""
        ds = np.arange(0.0, PLAN_HORIZON, PLAN_STEP)
        s = ego.s + WHEELBASE + ds
        kappa = np.abs(np.asarray(self.road.curvature(s)))
        v_curve = np.sqrt(LAT_ACCEL / np.maximum(kappa, 1e-5))
        v_limit = np.asarray(self.road.speed_limit_kph(s), dtype=np.float64) / 3.6 * self.speed_pref
        v_allow = np.minimum(v_curve, v_limit)
        reach = np.sqrt(v_allow**2 + 2.0 * COMFORT_DECEL * np.maximum(ds - 10.0, 0.0))
        i = int(np.argmin(reach))
        # The current limit binding is plain cruising; a lower limit ahead is a reason to slow.
        self.plan_reason = "curve" if v_curve[i] < v_limit[i] else ("limit" if i > 0 else "free")
        self.v_plan = float(reach[i])
        return self.v_plan

    def step_noise(self, dt: float) -> None:
        self.offset += -self.offset * dt / 3.0 + 0.12 * math.sqrt(2 * dt / 3.0) * float(self.rng.standard_normal())
        self.speed_pref += (1.0 - self.speed_pref) * dt / 15.0 + 0.03 * math.sqrt(2 * dt / 15.0) * float(self.rng.standard_normal())

    def control(self, ego: EgoState, dt: float, leader_gap: float | None, leader_v: float) -> tuple[float, float]:
        """(acceleration command, steering command) for the next step."""
        # Lateral: pure pursuit at the rear axle to a point on the lane centre.
        look = min(max(1.1 * ego.v, 6.0), 30.0)
        tx, ty, _ = self.road.pose(ego.s + look, lane_d(self.lane) + self.offset)
        dx, dy = tx - ego.x, ty - ego.y
        c, sn = math.cos(ego.yaw), math.sin(ego.yaw)
        lx, ly = c * dx + sn * dy, -sn * dx + c * dy
        dist2 = max(lx * lx + ly * ly, 1.0)
        steer = math.atan(WHEELBASE * 2.0 * ly / dist2) + 0.0015 * float(self.rng.standard_normal())
        # Longitudinal: track the speed envelope, unless a leader asks for less (IDM).
        a_free = min(max((self.v_plan - ego.v) / 1.5, -3.0), MAX_ACCEL)
        a = a_free
        self.reason = self.plan_reason
        if leader_gap is not None:
            a_lead = idm_interaction(ego.v, leader_gap, ego.v - leader_v, a_max=MAX_ACCEL)
            if a_lead < a_free:
                a = a_lead
                self.reason = "lead"
            if leader_v < 0.3 and leader_gap < 8.0:
                # The IDM only creeps up on a stopped car; a driver stops and waits.
                a = min(a, -1.5)
                self.reason = "lead"
        return max(a, -MAX_BRAKE), steer


def step_bicycle(ego: EgoState, a_cmd: float, steer_cmd: float, dt: float) -> None:
    """Kinematic bicycle at the rear axle with a jerk limit and a rate-limited steering actuator."""
    jerk = 4.0 if a_cmd > ego.a else 12.0  # braking builds up faster than throttle
    ego.a += min(max(a_cmd - ego.a, -jerk * dt), jerk * dt)
    target = min(max(steer_cmd, -MAX_STEER), MAX_STEER)
    ego.steer += min(max(target - ego.steer, -STEER_RATE * dt), STEER_RATE * dt)
    v_mid = max(ego.v + 0.5 * ego.a * dt, 0.0)
    yaw_mid = ego.yaw + 0.5 * v_mid * math.tan(ego.steer) / WHEELBASE * dt
    ego.x += v_mid * math.cos(yaw_mid) * dt
    ego.y += v_mid * math.sin(yaw_mid) * dt
    ego.yaw += v_mid * math.tan(ego.steer) / WHEELBASE * dt
    ego.v = max(ego.v + ego.a * dt, 0.0)
    if ego.v == 0.0 and ego.a < 0.0:
        ego.a = 0.0
