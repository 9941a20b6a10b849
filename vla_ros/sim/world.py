"""Simulating a planned world at a fixed step: the ego and its expert, traffic, spawning.

`WorldStepper` advances the world one step at a time (the closed-loop rollout drives its ego);
`simulate` runs the whole recording up front with the expert (it is cheap next to rendering) and returns a
`Timeline`: the ego's state at every step and the traffic at every step. Rendering, odometry,
ground truth and labels read from it; labels may look into the future (the action a sentence
names is the one the ego actually takes next). States between steps are interpolated, so the
trajectory does not depend on the camera rate.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vla_ros.sim.ego import EGO_WIDTH, FRONT_OVERHANG, REAR_OVERHANG, WHEELBASE, EgoState, ExpertDriver, step_bicycle
from vla_ros.sim.road import lane_d
from vla_ros.sim.scenarios import WorldPlan
from vla_ros.sim.traffic import Vehicle

STEP_NS = 20_000_000  # 50 Hz physics = the odometry rate
PLAN_EVERY = 5  # speed planner at 10 Hz
EGO_START_S = 15.0
EGO_FIELDS = ("x", "y", "yaw", "v", "a", "yaw_rate", "s", "d", "steer")
REASONS = ("free", "curve", "limit", "lead")


@dataclass(frozen=True)
class VehicleSnap:
    """A traffic vehicle at one instant (world frame; x, y, z=0 at the centre of its footprint)."""

    vid: int
    role: str
    x: float
    y: float
    yaw: float
    v: float
    a: float
    s: float
    d: float
    length: float
    width: float
    height: float
    color: int
    changing_lane: bool
    target_lane: int

    @property
    def braking(self) -> bool:
        return self.a < -0.4


@dataclass
class Timeline:
    plan: WorldPlan
    start_ns: int
    ego: np.ndarray  # (N, len(EGO_FIELDS)) float64, one row per step
    reason: np.ndarray  # (N,) int8 index into REASONS
    traffic: list[tuple[VehicleSnap, ...]]  # per step

    @property
    def steps(self) -> int:
        return len(self.ego)

    def step_time_ns(self, k: int) -> int:
        return self.start_ns + k * STEP_NS

    def field(self, name: str) -> np.ndarray:
        return self.ego[:, EGO_FIELDS.index(name)]

    def _locate(self, t_ns: int) -> tuple[int, float]:
        off = t_ns - self.start_ns
        if off < 0 or off > (self.steps - 1) * STEP_NS:
            raise ValueError(f"time {t_ns} is outside the simulated span")
        k = min(off // STEP_NS, self.steps - 2)
        return int(k), (off - k * STEP_NS) / STEP_NS

    def ego_at(self, t_ns: int) -> dict[str, float]:
        """Ego state at any instant in the span (linear interpolation; yaw unwrapped)."""
        k, a = self._locate(t_ns)
        r0, r1 = self.ego[k], self.ego[k + 1]
        out = {n: float(r0[i] + a * (r1[i] - r0[i])) for i, n in enumerate(EGO_FIELDS)}
        return out

    def traffic_at(self, t_ns: int) -> tuple[VehicleSnap, ...]:
        """Vehicles at any instant: those present at both neighbouring steps are interpolated."""
        k, a = self._locate(t_ns)
        if a == 0.0:
            return self.traffic[k]
        nxt = {v.vid: v for v in self.traffic[k + 1]}
        out = []
        for v0 in self.traffic[k]:
            v1 = nxt.get(v0.vid)
            if v1 is None:
                out.append(v0)
                continue
            lerp = lambda p, q: p + a * (q - p)  # noqa: E731
            dyaw = math.remainder(v1.yaw - v0.yaw, 2 * math.pi)
            out.append(
                VehicleSnap(
                    v0.vid, v0.role, lerp(v0.x, v1.x), lerp(v0.y, v1.y), v0.yaw + a * dyaw, lerp(v0.v, v1.v), lerp(v0.a, v1.a),
                    lerp(v0.s, v1.s), lerp(v0.d, v1.d), v0.length, v0.width, v0.height, v0.color, v0.changing_lane, v0.target_lane,
                )
            )
        return tuple(out)


def ego_front_s(s: float) -> float:
    return s + WHEELBASE + FRONT_OVERHANG


def leader_of(s_front: float, d: float, half_width: float, vehicles: list[Vehicle], skip: Vehicle | None = None) -> tuple[float, float, Vehicle] | None:
    """(gap, speed, vehicle) of the nearest vehicle ahead of `s_front` overlapping lateral
    position d, or None."""
    best = None
    for veh in vehicles:
        if veh is skip or not veh.occupies(d, half_width):
            continue
        gap = veh.s - veh.length / 2 - s_front
        if gap > -0.5 and (best is None or gap < best[0]):
            best = (gap, veh.v, veh)
    return best


EgoControl = Callable[[EgoState, float, "tuple[float, float, Vehicle] | None"], tuple[float, float]]


class WorldStepper:
    """The world advanced one STEP_NS at a time: spawning, traffic (which reacts to the ego), then
    the ego. The ego is driven by the world's expert, or by `step(control=...)`: a function of
    (ego state, t, leader) -> (acceleration command, steering command) applied through the same
    vehicle model. `simulate` runs it with the expert for a whole recording; the closed-loop
    rollout steps it with the node's published trajectory."""

    def __init__(self, plan: WorldPlan, seed: int) -> None:
        self.plan = plan
        self.road = road = plan.road
        self.driver = ExpertDriver(road, np.random.default_rng([seed, 2]))
        x, y, h = road.pose(EGO_START_S, lane_d(0))
        self.ego = EgoState(x, y, h, 0.0, s=EGO_START_S, d=lane_d(0))
        self.ego.v = 0.9 * self.driver.plan_speed(self.ego)
        self.vehicles: list[Vehicle] = []
        self.pending = list(plan.spawns)
        self.next_id = 1
        self.k = 0  # steps taken; the state is the world at k * STEP_NS
        self.reason = "free"  # what set the expert's speed at the last step it drove

    def ego_row(self) -> tuple[float, ...]:
        ego = self.ego
        return (ego.x, ego.y, ego.yaw, ego.v, ego.a, ego.yaw_rate, ego.s, ego.d, ego.steer)

    def snapshot(self) -> tuple[VehicleSnap, ...]:
        road = self.road
        snaps = []
        for veh in self.vehicles:
            vx, vy, vyaw = veh.pose(road)
            snaps.append(
                VehicleSnap(veh.vid, veh.spawn.role, vx, vy, vyaw, veh.v, veh.a, veh.s, veh.d, veh.spawn.length, veh.spawn.width,
                            veh.spawn.height, veh.spawn.color, veh.changing_lane, veh.lane)
            )
        return tuple(snaps)

    def leader(self) -> tuple[float, float, Vehicle] | None:
        """(gap, speed, vehicle) of what drives ahead of the ego in its path, or None."""
        return leader_of(ego_front_s(self.ego.s), self.ego.d, EGO_WIDTH / 2, self.vehicles)

    def step(self, control: EgoControl | None = None) -> None:
        """Advance the world by one step; the ego by the expert (None) or by `control`."""
        road, ego, vehicles = self.road, self.ego, self.vehicles
        dt = STEP_NS / 1e9
        t = self.k * dt
        front = ego_front_s(ego.s)
        # Spawning: when the ego reaches the trigger and the spot is free.
        while self.pending and ego.s >= self.pending[0].trigger_s:
            sp = self.pending[0]
            if sp.gap >= 0:
                s_new = front + sp.gap + sp.length / 2
            else:
                s_new = ego.s - REAR_OVERHANG + sp.gap - sp.length / 2
            d_new = lane_d(sp.lane)
            free = all(abs(v.s - s_new) > 30.0 or not v.occupies(d_new, sp.width / 2) for v in vehicles)
            if not free and ego.s < sp.trigger_s + 300.0:
                break  # try again next step
            self.pending.pop(0)
            if free:
                v_new = max(sp.speed_of_ego * ego.v + sp.speed_add, 0.0)
                vehicles.append(Vehicle(self.next_id, sp, s_new, v_new, d_new, sp.lane, target_v=v_new, step_started=t))
                self.next_id += 1

        # Traffic first (it sees the ego as a possible leader), then the ego.
        updates = []
        for veh in vehicles:
            lead = leader_of(veh.s + veh.length / 2, veh.d, veh.spawn.width / 2, vehicles, skip=veh)
            ego_rear_gap = (ego.s - REAR_OVERHANG) - (veh.s + veh.length / 2)
            lg, lv = (lead[0], lead[1]) if lead else (None, 0.0)
            if ego_rear_gap > -0.5 and abs(veh.d - ego.d) < veh.spawn.width / 2 + EGO_WIDTH / 2 + 0.2 and (lg is None or ego_rear_gap < lg):
                lg, lv = ego_rear_gap, ego.v
            updates.append((veh, lg, lv, veh.s - veh.length / 2 - front))
        for veh, lg, lv, ego_gap in updates:
            veh.update(t, dt, road, ego_gap, lg, lv)
        self.vehicles = vehicles = [
            v for v in vehicles
            if -90.0 < v.s - ego.s < 260.0 and not (v.leaving and v.s - ego.s > 180.0)
        ]

        lead = leader_of(front, ego.d, EGO_WIDTH / 2, vehicles)
        if control is None:
            driver = self.driver
            if self.k % PLAN_EVERY == 0:
                driver.plan_speed(ego)
            driver.step_noise(dt)
            a_cmd, steer_cmd = driver.control(ego, dt, lead[0] if lead else None, lead[1] if lead else 0.0)
            self.reason = driver.reason
        else:
            a_cmd, steer_cmd = control(ego, t, lead)
        step_bicycle(ego, a_cmd, steer_cmd, dt)
        ego.s, ego.d = road.project(ego.x, ego.y, ego.s + ego.v * dt)
        self.k += 1


def simulate(plan: WorldPlan, duration_s: float, seed: int, start_ns: int) -> Timeline:
    """Run the world for `duration_s` seconds (plus nothing else: callers add any margin)."""
    world = WorldStepper(plan, seed)
    n = int(round(duration_s * 1e9 / STEP_NS)) + 1
    rows = np.empty((n, len(EGO_FIELDS)))
    reasons = np.empty(n, dtype=np.int8)
    traffic: list[tuple[VehicleSnap, ...]] = []
    for k in range(n):
        # Record the state at t first: row k is the world at start + k * STEP.
        rows[k] = world.ego_row()
        traffic.append(world.snapshot())
        world.step()
        reasons[k] = REASONS.index(world.reason)
    return Timeline(plan, start_ns, rows, reasons, traffic)
