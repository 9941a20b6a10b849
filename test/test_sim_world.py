"""The driving world without pixels: roads, the expert driver, traffic and labels."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from vla_ros.sim.ego import EGO_WIDTH
from vla_ros.sim.labels import ground_truth
from vla_ros.sim.road import CurvePiece, Road, lane_d
from vla_ros.sim.scenarios import SCENARIOS, plan_world
from vla_ros.sim.world import Timeline, ego_front_s, simulate

START = 1000 * 10**9


def _run(scenario: str, seed: int = 4, duration: float = 60.0) -> Timeline:
    return simulate(plan_world(seed, scenario, duration * 34 + 800), duration, seed, START)


def test_road_geometry_is_exact_on_an_arc() -> None:
    r = 100.0
    road = Road([CurvePiece(math.pi / 2 * r, 1 / r, 1 / r)], [(0.0, 50)])
    x, y, h = road.centre(150.0)
    assert (x, y, h) == pytest.approx((r * math.sin(1.5), r * (1 - math.cos(1.5)), 1.5), abs=1e-3)
    s, d = road.project(*road.pose(50.0, 2.0)[:2], s_guess=45.0)
    assert (s, d) == pytest.approx((50.0, 2.0), abs=1e-4)


def test_same_seed_same_world_other_seed_differs() -> None:
    a, b, c = _run("mix", 3, 20.0), _run("mix", 3, 20.0), _run("mix", 9, 20.0)
    assert np.array_equal(a.ego, b.ego) and a.traffic == b.traffic
    assert not np.array_equal(a.ego[:, :2], c.ego[:, :2])


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_expert_drives_safely_in_lane_and_under_the_limit(scenario: str) -> None:
    t = _run(scenario)
    road = t.plan.road
    s, d, v = t.field("s"), t.field("d"), t.field("v")
    assert np.max(np.abs(d - lane_d(0))) < 0.7  # stays in its lane (lane half-width 1.75)
    limit = road.speed_limit_kph(s) / 3.6
    assert np.all(v <= limit * 1.12 + 0.5)
    lat = v**2 * np.abs(np.asarray(road.curvature(s)))
    assert lat.max() < 3.0  # comfortable in curves
    min_gap = math.inf
    for k in range(0, t.steps, 5):
        for veh in t.traffic[k]:
            if abs(veh.d - d[k]) < veh.width / 2 + EGO_WIDTH / 2:
                gap = veh.s - veh.length / 2 - ego_front_s(s[k])
                if gap > -5:
                    min_gap = min(min_gap, gap)
    assert min_gap > 1.0  # never touches a vehicle ahead


def test_scenarios_produce_their_behaviour() -> None:
    stop = _run("stop_and_go", seed=1, duration=80.0)
    assert stop.field("v").min() < 0.3  # comes to a standstill behind the lead
    curves = _run("curves", seed=1)
    v = curves.field("v")
    assert v.max() - v.min() > 4.0  # slows for curves and speeds up after them
    follow = _run("follow", seed=1)
    assert (follow.reason == 3).mean() > 0.3  # the lead sets the speed much of the time


def test_labels_follow_the_grammar_and_the_future() -> None:
    t = _run("mix", seed=5, duration=90.0)
    v = t.field("v")
    words = set()
    for k in range(0, t.steps - 160, 5):
        g = ground_truth(t, k)
        words.update(re.findall(r"[a-z]+", g["reasoning"].lower()))
        dv = v[k + 150] - v[k]
        if g["maneuver"] == "slow_down":
            assert dv < -1.0
        elif g["maneuver"] == "speed_up":
            assert dv > 1.0
        elif g["maneuver"] in ("follow", "keep_speed"):
            assert abs(dv) <= 1.0
    assert len(words) < 45  # a compact vocabulary
