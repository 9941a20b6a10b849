"""Closed-loop metrics on hand-built episodes whose answers are known in closed form: a perfect
follower, a scripted collision (and one from behind), a scripted lane departure; and the vehicle
controller following the expert's own path in the real world."""
from __future__ import annotations

import numpy as np
import pytest

from vla_ros.config import load_config
from vla_ros.sim.road import EDGE_D, CurvePiece, Road, lane_d
from vla_ros.sim.rollout.episode import START_NS, EpisodeSpec, run_episode, world_plan
from vla_ros.sim.rollout.follower import PathFollower, TimedPath
from vla_ros.sim.rollout.footprint import EGO_CENTER_AHEAD, EGO_LENGTH
from vla_ros.sim.rollout.log import EpisodeLog
from vla_ros.sim.rollout.scoring import score_episode, summarize
from vla_ros.sim.world import EGO_FIELDS, STEP_NS, VehicleSnap, WorldStepper

DT = STEP_NS / 1e9
ROAD = Road([CurvePiece(3000.0, 0.0, 0.0)], [(0.0, 100)])  # straight along +x: s = x, d = y


def _log(method: str, x: np.ndarray, y: np.ndarray, v: np.ndarray, traffic=None) -> EpisodeLog:
    n = len(x)
    ego = np.zeros((n, len(EGO_FIELDS)))
    cols = {"x": x, "y": y, "yaw": np.zeros(n), "v": v, "a": np.gradient(v, DT), "yaw_rate": np.zeros(n), "s": x, "d": y}
    for name, values in cols.items():
        ego[:, EGO_FIELDS.index(name)] = values
    return EpisodeLog("hand", method, 0, "hand", ROAD, START_NS, 0, ego, traffic or [()] * n)


def _car(vid: int, x: float, v: float, role: str = "lead") -> VehicleSnap:
    return VehicleSnap(vid, role, x, lane_d(0), 0.0, v, 0.0, x, lane_d(0), 4.6, 1.85, 1.5, 0, False, 0)


def _cruise(seconds: float = 10.0, speed: float = 20.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.arange(int(round(seconds / DT)) + 1) * DT
    return 50.0 + speed * t, np.full(len(t), lane_d(0)), np.full(len(t), speed)


def test_perfect_follower_scores_like_the_expert() -> None:
    x, y, v = _cruise()
    expert = _log("expert", x, y, v)
    m = score_episode(_log("model", x.copy(), y.copy(), v.copy()), expert)
    assert m["progress"] == pytest.approx(1.0) and m["route_progress_m"] == pytest.approx(200.0)
    assert m["dist_to_gt_trajectory"] == pytest.approx(0.0, abs=1e-9) and m["dist_to_gt_location"] == pytest.approx(0.0, abs=1e-9)
    assert not m["collision_any"] and not m["offroad"] and not m["wrong_lane"]
    assert m["lane_departure_time_s"] == 0.0 and m["offroad_time_s"] == 0.0
    assert m["driving_score"] == 1.0 and m["driving_score_failure"] is None
    assert m["min_distance_to_lane_boundary_m"] == pytest.approx(EDGE_D - (abs(lane_d(0)) + 1.9 / 2), abs=0.01)
    assert m["comfort"]["longitudinal_accel"]["max"] == pytest.approx(0.0, abs=1e-9)
    # half the speed: half the progress, and AlpaSim's score saturates at 0.8 of it
    slow = score_episode(_log("model", 50.0 + (x - 50.0) / 2, y, v / 2), expert)
    assert slow["progress"] == pytest.approx(0.5) and slow["driving_score"] == pytest.approx(0.5 / 0.8)
    assert slow["dist_to_gt_location"] == pytest.approx(100.0)


def test_scripted_collision_with_a_stopped_car_ahead() -> None:
    x, y, v = _cruise(9.6, 10.0)  # contact at 9.395 s; an episode ends at its first collision
    car_x = 150.0  # its rear at 147.7; the ego's front at x + EGO_CENTER_AHEAD + EGO_LENGTH / 2
    traffic = [(_car(7, car_x, 0.0),)] * len(x)
    m = score_episode(_log("model", x, y, v, traffic), _log("expert", *_cruise(12.0, 10.0)))
    contact_t = (car_x - 2.3 - (EGO_CENTER_AHEAD + EGO_LENGTH / 2) - 50.0) / 10.0
    assert m["collision_front"] and m["collision_at_fault"] and m["collision_any"] and not m["collision_rear"]
    assert m["first_collision_s"] == pytest.approx(np.ceil(contact_t / DT - 1e-9) * DT)
    (event,) = m["collisions"]
    assert event["with"] == "lead vehicle 7" and event["kind"] == "front" and event["at_fault"]
    assert m["driving_score"] == 0.0 and m["driving_score_failure"] == "collision_at_fault"
    assert m["ttc_min_s"] < 2 * DT and m["min_distance_to_obstacle_m"] == 0.0


def test_hit_from_behind_is_a_rear_collision_not_at_fault() -> None:
    x, y, v = _cruise(2.3, 10.0)  # contact at 2 s; an episode ends at its first collision
    t = np.arange(len(x)) * DT
    rear = x + EGO_CENTER_AHEAD - EGO_LENGTH / 2  # the ego's rear bumper
    traffic = [(_car(3, r - 2.3 - 10.0 + 5.0 * ti, 15.0, "passing"),) for r, ti in zip(rear, t)]  # closes 5 m/s from 10 m back
    m = score_episode(_log("model", x, y, v, traffic), _log("expert", x, y, v))
    assert m["collision_rear"] and not m["collision_at_fault"] and not m["collision_front"]
    assert m["first_collision_s"] == pytest.approx(2.0, abs=DT)
    assert m["driving_score"] == 1.0  # AlpaSim counts only at-fault collisions against the ego


def test_scripted_lane_departure_then_off_road() -> None:
    x, y, v = _cruise(10.0, 20.0)
    t = np.arange(len(x)) * DT
    drift = lane_d(0) + 0.5 * t  # 0.5 m/s to the left, yaw kept 0
    m = score_episode(_log("model", x, drift, v), _log("expert", x, y, v))
    half_w = 1.9 / 2
    leave_lane = (-half_w - lane_d(0)) / 0.5  # left corners cross the centre line (d = 0)
    leave_road = (EDGE_D - half_w - lane_d(0)) / 0.5  # ... and the left edge line
    assert m["lane_departure_time_s"] == pytest.approx(10.0 - leave_lane, abs=2 * DT)
    assert m["offroad_time_s"] == pytest.approx(10.0 - leave_road, abs=2 * DT)
    assert m["offroad"] and not m["collision_any"] and m["driving_score"] == 0.0 and m["driving_score_failure"] == "offroad"
    assert m["min_distance_to_lane_boundary_m"] == 0.0
    assert m["dist_to_gt_trajectory"] == pytest.approx(0.5 * 10.0, abs=1e-6)
    s = summarize([m, score_episode(_log("model", x, y, v), _log("expert", x, y, v))])
    assert s["collision_free_rate"] == 1.0 and s["offroad"] == 0.5 and s["driving_score"] == 0.5


def test_controller_follows_the_experts_own_path_in_the_world() -> None:
    """The vehicle controller given the expert's future as its path, 10 Hz, in a real world with
    curves and traffic: it stays on the expert's path and scores as the expert does."""
    spec = EpisodeSpec(0, 5, "curves", 25.0)
    expert = run_episode(spec, "expert", load_config(None))
    world = WorldStepper(world_plan(spec), spec.seed)
    follower = PathFollower()
    xs, ys, yaw = expert.field("x"), expert.field("y"), expert.field("yaw")
    rows, traffic = [], []
    for k in range(expert.steps):
        t = START_NS + k * STEP_NS
        rows.append(world.ego_row())
        traffic.append(world.snapshot())
        if k % 5 == 1:
            idx = np.arange(k, min(k + 321, expert.steps), 5)
            follower.set_path(TimedPath(START_NS + idx * STEP_NS, np.stack([xs[idx], ys[idx]], 1), yaw[idx]))
        world.step(None if k < expert.handover_step else (lambda e, _t, _l, now=t: follower.command(e, now)))
    follow = EpisodeLog("f", "model", spec.seed, spec.scenario, expert.road, START_NS, expert.handover_step, np.array(rows), traffic)
    m = score_episode(follow, expert)
    assert not m["collision_any"] and not m["offroad"] and m["lane_departure_time_s"] == 0.0
    assert m["dist_to_gt_trajectory"] < 0.15  # laterally on the expert's path
    assert m["dist_to_gt_location"] < 2.5  # along it, a little behind at most
    assert m["progress"] == pytest.approx(1.0, abs=0.02) and m["driving_score"] == 1.0
