"""Traffic vehicles: boxes that follow a lane, run a small program of speed changes and lane
changes (`scenarios.Step`), and keep a safe distance to whatever drives ahead of them (IDM)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from vla_ros.sim.road import Road, lane_d
from vla_ros.sim.scenarios import Spawn, Step

# Intelligent Driver Model parameters shared by traffic and the ego's follower.
IDM_MIN_GAP = 3.0  # m at standstill
IDM_HEADWAY = 1.4  # s
IDM_ACCEL = 1.5  # m/s^2
IDM_DECEL = 2.0  # m/s^2 comfortable braking
MAX_BRAKE = 8.0


def idm_interaction(v: float, gap: float, dv: float, a_max: float = IDM_ACCEL, b: float = IDM_DECEL) -> float:
    """Acceleration the IDM allows because of a leader `gap` m ahead closing at `dv` m/s
    (v - v_leader). Free-road behaviour is left to the caller; this term alone tends to a_max
    for a distant leader."""
    s_star = IDM_MIN_GAP + max(0.0, v * IDM_HEADWAY + v * dv / (2.0 * math.sqrt(a_max * b)))
    return a_max * (1.0 - (s_star / max(gap, 0.1)) ** 2)


@dataclass
class Vehicle:
    vid: int
    spawn: Spawn
    s: float
    v: float
    d: float
    lane: int
    a: float = 0.0
    target_v: float = 0.0
    accel: float = 1.5
    decel: float = 2.0
    step_index: int = 0
    step_started: float = 0.0
    lc_from: float = 0.0  # lane change: lateral start, end, start time, duration
    lc_to: float = 0.0
    lc_t0: float = -1.0
    lc_dur: float = 0.0
    d_rate: float = 0.0
    leaving: bool = False

    @property
    def length(self) -> float:
        return self.spawn.length

    @property
    def changing_lane(self) -> bool:
        return self.lc_t0 >= 0.0

    def occupies(self, d: float, half_width: float) -> bool:
        """Whether this vehicle overlaps laterally a vehicle of `half_width` at offset d."""
        return abs(self.d - d) < self.spawn.width / 2 + half_width + 0.2

    def update(self, t: float, dt: float, road: Road, ego_gap: float, leader_gap: float | None, leader_v: float) -> None:
        """Advance by dt. `ego_gap`: ego front to this vehicle's rear (m); `leader_gap`/`leader_v`:
        whatever is ahead in this vehicle's path (None if nothing)."""
        self._run_program(t, road, ego_gap)
        if self.lc_t0 >= 0.0:
            u = min((t - self.lc_t0) / self.lc_dur, 1.0)
            # Quintic smoothstep: zero lateral velocity and acceleration at both ends.
            w = u * u * u * (10 - 15 * u + 6 * u * u)
            dw = 30 * u * u * (1 - u) * (1 - u) / self.lc_dur
            self.d = self.lc_from + (self.lc_to - self.lc_from) * w
            self.d_rate = (self.lc_to - self.lc_from) * dw
            if u >= 1.0:
                self.lc_t0 = -1.0
                self.d_rate = 0.0
        err = self.target_v - self.v
        a = min(max(err / 0.8, -self.decel), self.accel)  # reach the target at the program's rate
        if leader_gap is not None:
            a = min(a, idm_interaction(self.v, leader_gap, self.v - leader_v))
        self.a = max(a, -MAX_BRAKE)
        self.v = max(self.v + self.a * dt, 0.0)
        if self.v == 0.0 and self.a < 0:
            self.a = 0.0
        self.s += self.v * dt

    def _run_program(self, t: float, road: Road, ego_gap: float) -> None:
        steps = self.spawn.steps
        while self.step_index < len(steps):
            st: Step = steps[self.step_index]
            if t - self.step_started < st.after_s - 1e-9:
                return
            if st.gap_above is not None and ego_gap < st.gap_above:
                return
            if st.gap_below is not None and ego_gap > st.gap_below:
                return
            if st.speed is not None or st.speed_of_limit is not None:
                limit = road.speed_limit_kph(self.s) / 3.6
                self.target_v = st.speed if st.speed is not None else st.speed_of_limit * limit
                self.accel, self.decel = st.accel, st.decel
                self.leaving = st.speed is not None and st.speed >= 30.0
            if st.lane is not None and st.lane != self.lane:
                self.lc_from, self.lc_to = self.d, lane_d(st.lane)
                self.lc_t0, self.lc_dur = t, st.lane_change_s
                self.lane = st.lane
            self.step_index += 1
            self.step_started = t

    def pose(self, road: Road) -> tuple[float, float, float]:
        """World (x, y, yaw) of the vehicle centre."""
        x, y, h = road.pose(self.s, self.d)
        return x, y, h + math.atan2(self.d_rate, max(self.v, 0.5))
