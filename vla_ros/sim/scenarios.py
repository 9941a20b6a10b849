"""Scenarios: how a seed becomes a road, its speed limits and the traffic on it.

The world is a chain of sections. Each section has one scenario kind, which decides its road
shape, its speed limits and the vehicles it spawns; `--scenario mix` draws every section's kind
from the seeded generator, a named scenario repeats that kind. Everything a section does is
triggered by the ego reaching a point on the road, so the story plays out the same however fast
the ego drives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vla_ros.sim.road import CurvePiece, Road

SCENARIOS: dict[str, str] = {
    "cruise": "gentle curves, one speed limit, faster cars overtaking on the left",
    "curves": "tight curves and S-bends under a moderate limit: slow down, then speed up out of them",
    "speed_zones": "speed limit changes every few hundred metres (signs and numbers painted on the road)",
    "follow": "a slower lead vehicle that brakes and speeds up again",
    "stop_and_go": "a lead vehicle that brakes to a standstill, waits and drives off, twice",
    "cut_in": "a faster car overtakes on the left, cuts in close ahead and brakes",
}
MIX = "mix"


@dataclass(frozen=True)
class Step:
    """One step of a traffic vehicle's program; it starts once its condition holds.

    Conditions (all that are set must hold): `after_s` seconds since the previous step started,
    `gap_above`/`gap_below` metres between the ego's front and this vehicle's rear.
    Actions: a new target speed (absolute m/s, or `speed_of_limit` x the speed limit) reached at
    `accel` (speeding up) or `decel` (braking) m/s^2; a lane change to `lane` over `lane_change_s`.
    """

    after_s: float = 0.0
    gap_above: float | None = None
    gap_below: float | None = None
    speed: float | None = None
    speed_of_limit: float | None = None
    accel: float = 1.5
    decel: float = 2.0
    lane: int | None = None
    lane_change_s: float = 3.0


LEAVE = Step(speed=36.0, accel=2.5)


@dataclass(frozen=True)
class Spawn:
    """A vehicle that appears when the ego passes `trigger_s`, `gap` metres ahead of the ego's
    front (negative: behind its rear), driving at `speed_of_ego` x ego speed + `speed_add`."""

    trigger_s: float
    lane: int
    gap: float
    speed_of_ego: float
    speed_add: float
    steps: tuple[Step, ...]
    role: str  # "lead", "cut_in" or "passing"
    length: float = 4.6
    width: float = 1.85
    height: float = 1.5
    color: int = 0


@dataclass(frozen=True)
class Section:
    kind: str
    s0: float
    s1: float


@dataclass
class WorldPlan:
    road: Road
    sections: list[Section]
    spawns: list[Spawn] = field(default_factory=list)

    def section_at(self, s: float) -> Section:
        for sec in self.sections:
            if s < sec.s1:
                return sec
        return self.sections[-1]


N_COLORS = 8


def _curve(radius: float, angle_deg: float, sign: int, transition: float) -> list[CurvePiece]:
    """An arc with clothoid entry and exit; `angle_deg` of heading change in total."""
    k = sign / radius
    total = math.radians(angle_deg) * radius  # arc length if there were no transitions
    arc = max(total - transition, 5.0)  # each transition turns half as much as its length at k
    return [CurvePiece(transition, 0.0, k), CurvePiece(arc, k, k), CurvePiece(transition, k, 0.0)]


def _straight(length: float) -> list[CurvePiece]:
    return [CurvePiece(length, 0.0, 0.0)]


def _mild_road(rng: np.random.Generator, length: float) -> list[CurvePiece]:
    pieces = _straight(float(rng.uniform(60, 140)))
    while sum(p.length for p in pieces) < length - 150:
        pieces += _curve(float(rng.uniform(500, 1500)), float(rng.uniform(8, 25)), int(rng.choice((-1, 1))), 40.0)
        pieces += _straight(float(rng.uniform(60, 180)))
    return pieces


def _vehicle(rng: np.random.Generator) -> dict:
    if rng.random() < 0.15:  # box truck / van
        return {"length": float(rng.uniform(6.5, 9.0)), "width": 2.4, "height": float(rng.uniform(2.8, 3.3)), "color": int(rng.integers(N_COLORS))}
    return {
        "length": float(rng.uniform(4.2, 4.9)),
        "width": float(rng.uniform(1.78, 1.95)),
        "height": float(rng.uniform(1.42, 1.6)),
        "color": int(rng.integers(N_COLORS)),
    }


def _passing(rng: np.random.Generator, trigger: float) -> Spawn:
    return Spawn(trigger, 1, float(rng.uniform(-60, -35)), 1.0, float(rng.uniform(5, 9)), (Step(after_s=60.0, speed=36.0),), "passing", **_vehicle(rng))


def _section(kind: str, rng: np.random.Generator, s0: float) -> tuple[list[CurvePiece], list[tuple[float, int]], list[Spawn]]:
    """Road pieces, limits (s relative to the section start) and spawns (absolute s)."""
    spawns: list[Spawn] = []
    if kind == "cruise":
        pieces = _mild_road(rng, float(rng.uniform(500, 800)))
        limits = [(0.0, int(rng.choice((80, 90, 100, 110))))]
        for _ in range(int(rng.integers(0, 3))):
            spawns.append(_passing(rng, s0 + float(rng.uniform(0, 300))))
    elif kind == "curves":
        pieces = _straight(float(rng.uniform(60, 120)))
        sign = int(rng.choice((-1, 1)))
        for _ in range(int(rng.integers(2, 4))):
            pieces += _curve(float(rng.uniform(50, 250)), float(rng.uniform(30, 80)), sign, float(rng.uniform(20, 40)))
            gap = float(rng.choice((0.0, rng.uniform(30, 100))))  # 0: an S-bend
            if gap > 0:
                pieces += _straight(gap)
            sign = -sign if gap == 0 or rng.random() < 0.6 else sign
        pieces += _straight(float(rng.uniform(80, 150)))
        limits = [(0.0, int(rng.choice((60, 70, 80))))]
        if rng.random() < 0.5:
            spawns.append(_passing(rng, s0 + 20.0))
    elif kind == "speed_zones":
        zones = int(rng.integers(2, 4))
        zone_len = [float(rng.uniform(220, 380)) for _ in range(zones)]
        pieces = _mild_road(rng, sum(zone_len) + 60)
        limits = []
        choices = [30, 50, 60, 80, 100]
        prev = None
        at = 0.0
        for z in range(zones):
            opts = [c for c in choices if prev is None or abs(c - prev) >= 20]
            prev = int(rng.choice(opts))
            limits.append((at, prev))
            at += zone_len[z]
    elif kind == "follow":
        pieces = _mild_road(rng, float(rng.uniform(900, 1300)))
        limits = [(0.0, int(rng.choice((70, 80, 90, 100))))]
        steps = (
            Step(gap_below=45.0, speed_of_limit=0.8, accel=1.0),
            Step(after_s=float(rng.uniform(4, 8)), speed_of_limit=float(rng.uniform(0.4, 0.6)), decel=float(rng.uniform(1.5, 3.0))),
            Step(after_s=float(rng.uniform(6, 9)), speed_of_limit=0.9, accel=1.2),
            Step(after_s=float(rng.uniform(6, 10)), speed_of_limit=float(rng.uniform(0.5, 0.7)), decel=float(rng.uniform(1.0, 2.0))),
            Step(after_s=float(rng.uniform(6, 10)), speed_of_limit=1.0, accel=1.0),
            Step(after_s=8.0, speed=36.0, accel=2.5),
        )
        spawns.append(Spawn(s0 + 20.0, 0, 170.0, 0.55, 0.0, steps, "lead", **_vehicle(rng)))
    elif kind == "stop_and_go":
        pieces = _mild_road(rng, float(rng.uniform(600, 900)))
        limits = [(0.0, int(rng.choice((50, 60, 70))))]
        steps = (
            Step(gap_below=40.0, speed_of_limit=0.7, accel=1.0),
            Step(after_s=float(rng.uniform(3, 6)), speed=0.0, decel=float(rng.uniform(2.5, 4.0))),
            Step(after_s=float(rng.uniform(6, 9)), speed_of_limit=0.6, accel=1.5),
            Step(after_s=float(rng.uniform(6, 9)), speed=0.0, decel=float(rng.uniform(2.0, 3.0))),
            Step(after_s=float(rng.uniform(6, 9)), speed_of_limit=0.9, accel=1.5),
            Step(after_s=6.0, speed=36.0, accel=2.5),
        )
        spawns.append(Spawn(s0 + 20.0, 0, 150.0, 0.5, 0.0, steps, "lead", **_vehicle(rng)))
    elif kind == "cut_in":
        pieces = _mild_road(rng, float(rng.uniform(600, 900)))
        limits = [(0.0, int(rng.choice((80, 90, 100))))]
        steps = (
            Step(gap_above=float(rng.uniform(4, 10)), lane=0, lane_change_s=float(rng.uniform(2.0, 3.5))),
            Step(after_s=float(rng.uniform(2.5, 4.0)), speed_of_limit=float(rng.uniform(0.55, 0.75)), decel=float(rng.uniform(1.5, 3.0))),
            Step(after_s=float(rng.uniform(6, 9)), speed=36.0, accel=2.0),
        )
        spawns.append(Spawn(s0 + 40.0, 1, -30.0, 1.0, float(rng.uniform(5, 8)), steps, "cut_in", **_vehicle(rng)))
    else:
        raise ValueError(f"unknown scenario '{kind}'")
    return pieces, limits, spawns


def plan_world(seed: int, scenario: str, min_length_m: float) -> WorldPlan:
    """Sections until the road is at least `min_length_m` long. Deterministic per (seed, scenario)."""
    if scenario != MIX and scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario '{scenario}' (known: {', '.join([*SCENARIOS, MIX])})")
    rng = np.random.default_rng([seed, 1])
    kinds = list(SCENARIOS)
    pieces: list[CurvePiece] = []
    limits: list[tuple[float, int]] = []
    sections: list[Section] = []
    spawns: list[Spawn] = []
    s0 = 0.0
    prev_kind = None
    while s0 < min_length_m:
        if scenario == MIX:
            kind = str(rng.choice([k for k in kinds if k != prev_kind]))
        else:
            kind = scenario
        sec_pieces, sec_limits, sec_spawns = _section(kind, rng, s0)
        length = sum(p.length for p in sec_pieces)
        pieces += sec_pieces
        for at, kph in sec_limits:
            if not limits or limits[-1][1] != kph:  # a sign only where the limit changes
                limits.append((s0 + at, kph))
        spawns += sec_spawns
        sections.append(Section(kind, s0, s0 + length))
        s0 += length
        prev_kind = kind
    # Run-out so look-ahead never falls off the end.
    pieces += _straight(600.0)
    sections[-1] = Section(sections[-1].kind, sections[-1].s0, s0 + 600.0)
    return WorldPlan(Road(pieces, limits), sections, sorted(spawns, key=lambda sp: sp.trigger_s))
