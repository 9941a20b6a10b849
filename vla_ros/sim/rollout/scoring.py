"""Closed-loop metrics of one episode against the expert's drive of the same world, named and
defined as NVIDIA AlpaSim's scorers (`src/eval`) name them where the quantity is the same, plus
route progress, collision events, off-road / lane-departure time, time-to-collision, comfort,
fallback time, inference latency and a driving score (docs/rollout.md has every definition).

Every quantity is taken over the steps from the handover to the end of the episode (50 Hz).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from vla_ros.sim.ego import EGO_WIDTH
from vla_ros.sim.road import EDGE_D
from vla_ros.sim.rollout.footprint import Rect, bumper, distance, ego_rect, overlaps
from vla_ros.sim.rollout.log import METHODS, EpisodeLog
from vla_ros.sim.world import ego_front_s

# AlpaSim's scene score: 0 after an at-fault collision or going off-road, else progress relative
# to the reference (clipped to [0, 1]) divided by this threshold, capped at 1.
PROGRESS_SATURATION = 0.8
MIN_GT_DISTANCE_M = 5.0  # a reference drive shorter than this scores 1 on progress
WRONG_LANE_YAW = 2.0 * math.pi / 3.0
NEAR_M = 40.0  # vehicles further than this (centre to centre) are not measured exactly
TTC_CAP_S = 99.0  # reported when nothing was ever closing in


def vehicle_rect(v: Any) -> Rect:
    return Rect(v.x, v.y, v.yaw, v.length / 2, v.width / 2)


def _percentiles(values: np.ndarray) -> dict[str, float]:
    a = np.abs(np.asarray(values, dtype=np.float64))
    if a.size == 0:
        return {"p50": 0.0, "p95": 0.0, "max": 0.0}
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "max": float(a.max())}


def _dist_to_reference_path(s: float, d: float, x: float, y: float, ref: EpisodeLog, ref_s: np.ndarray, ref_d: np.ndarray) -> float:
    """Distance from the ego to the reference's path: laterally in road coordinates where the
    reference drove past the same arc length, else to the nearer end of its path."""
    if ref_s[0] <= s <= ref_s[-1]:
        return abs(d - float(np.interp(s, ref_s, ref_d)))
    k = 0 if s < ref_s[0] else -1
    return float(math.hypot(x - ref.field("x")[ref.handover_step:][k], y - ref.field("y")[ref.handover_step:][k]))


def score_episode(log: EpisodeLog, reference: EpisodeLog, control_period_s: float = 0.1) -> dict[str, Any]:
    """The metrics of `log` with `reference` (the expert's drive) as AlpaSim's ground truth."""
    road = log.road
    h = log.handover_step
    x, y, yaw, v, a, yaw_rate, s, d = (log.field(n)[h:] for n in ("x", "y", "yaw", "v", "a", "yaw_rate", "s", "d"))
    n = len(x)
    dt = log.dt_s
    rh = reference.handover_step
    ref_s, ref_d = reference.field("s")[rh:], reference.field("d")[rh:]
    ref_s = np.maximum.accumulate(ref_s)  # a standing car repeats its s; keep it non-decreasing for interp
    ref_x, ref_y = reference.field("x")[rh:], reference.field("y")[rh:]

    front, rear, lateral = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    offroad = np.zeros(n, bool)
    departed = np.zeros(n, bool)
    wrong_lane = np.zeros(n, bool)
    boundary = np.zeros(n)
    obstacle = np.full(n, math.inf)
    dist_path = np.zeros(n)
    dist_loc = np.zeros(n)
    ttc = math.inf
    events: list[dict[str, Any]] = []
    touching: set[int] = set()
    for i in range(n):
        rect = ego_rect(float(x[i]), float(y[i]), float(yaw[i]))
        fb, rb = bumper(rect, True), bumper(rect, False)
        now: set[int] = set()
        for veh in log.traffic[h + i]:
            if math.hypot(veh.x - rect.cx, veh.y - rect.cy) > NEAR_M:
                continue
            vr = vehicle_rect(veh)
            gap = distance(rect, vr)
            obstacle[i] = min(obstacle[i], gap)
            if gap == 0.0:
                kind = "front" if overlaps(vr, fb) else ("rear" if overlaps(vr, rb) else "lateral")
                front[i] |= kind == "front"
                rear[i] |= kind == "rear"
                lateral[i] |= kind == "lateral"
                now.add(veh.vid)
                if veh.vid not in touching:
                    events.append({"time_s": round(i * dt, 3), "with": f"{veh.role} vehicle {veh.vid}", "kind": kind,
                                   "at_fault": kind != "rear", "ego_speed": round(float(v[i]), 2), "other_speed": round(float(veh.v), 2)})
            # Time to collision with what is ahead in the ego's path (the leader the expert's IDM sees).
            if abs(veh.d - float(d[i])) < veh.width / 2 + EGO_WIDTH / 2:
                gap_s = veh.s - veh.length / 2 - ego_front_s(float(s[i]))
                closing = float(v[i]) - veh.v
                if gap_s > 0 and closing > 1e-3:
                    ttc = min(ttc, gap_s / closing)
        touching = now
        corner_d = [road.project(float(cx), float(cy), float(s[i]))[1] for cx, cy in rect.corners()]
        outer = max(abs(c) for c in corner_d)
        offroad[i] = outer > EDGE_D
        departed[i] = max(corner_d) > 0.0 or min(corner_d) < -EDGE_D  # the ego lane is lane 0: d in [-EDGE_D, 0]
        boundary[i] = max(EDGE_D - outer, 0.0)
        heading = road.centre(float(s[i]))[2]
        wrong_lane[i] = abs(math.remainder(float(yaw[i]) - heading, 2 * math.pi)) > WRONG_LANE_YAW
        dist_path[i] = _dist_to_reference_path(float(s[i]), float(d[i]), float(x[i]), float(y[i]), reference, ref_s, ref_d)
        j = min(i, len(ref_x) - 1)
        dist_loc[i] = math.hypot(float(x[i] - ref_x[j]), float(y[i] - ref_y[j]))

    any_collision = front | rear | lateral
    at_fault = bool((front | lateral).any())
    progress_m = float(s[-1] - s[0]) if n else 0.0
    gt_m = float(ref_s[-1] - ref_s[0]) if len(ref_s) else 0.0
    progress = progress_m / gt_m if gt_m > 1e-6 else 1.0
    traveled = float(np.sum(np.hypot(np.diff(x), np.diff(y)))) if n > 1 else 0.0
    gt_traveled = float(np.sum(np.hypot(np.diff(ref_x), np.diff(ref_y)))) if len(ref_x) > 1 else 0.0
    progress_score = 1.0 if gt_traveled < MIN_GT_DISTANCE_M else min(min(max(progress, 0.0), 1.0) / PROGRESS_SATURATION, 1.0)
    failure = "collision_at_fault" if at_fault else ("offroad" if offroad.any() else None)
    jerk = np.diff(a) / dt if n > 1 else np.zeros(0)
    lat_a = v * yaw_rate
    lat_jerk = np.diff(lat_a) / dt if n > 1 else np.zeros(0)
    fallback = np.asarray(log.fallback, bool)
    lat_ms = np.asarray(log.latency_ms, dtype=np.float64)
    return {
        "method": log.method,
        "seed": log.seed,
        "scenario": log.scenario,
        "duration_s": round(n * dt, 3),
        "terminated": log.terminated,
        # AlpaSim names (aggregated over time as AlpaSim aggregates them)
        "collision_any": bool(any_collision.any()),
        "collision_front": bool(front.any()),
        "collision_rear": bool(rear.any()),
        "collision_lateral": bool(lateral.any()),
        "collision_at_fault": at_fault,
        "offroad": bool(offroad.any()),
        "offroad_or_collision_at_fault": bool(at_fault or offroad.any()),
        "wrong_lane": bool(wrong_lane.any()),
        "min_distance_to_lane_boundary_m": float(boundary.min()) if n else 0.0,
        "min_distance_to_obstacle_m": float(obstacle.min()) if n and np.isfinite(obstacle.min()) else None,
        "progress": progress,
        "progress_rel_to_total": progress,
        "dist_to_gt_trajectory": float(dist_path.max()) if n else 0.0,
        "dist_to_gt_location": float(dist_loc.max()) if n else 0.0,
        "dist_traveled_m": traveled,
        "gt_dist_traveled_m": gt_traveled,
        "driving_score": 0.0 if failure else progress_score,
        "driving_score_failure": failure,
        # vla_ros additions
        "route_progress_m": progress_m,
        "route_progress_pct_of_expert": 100.0 * progress,
        "collisions": events,
        "first_collision_s": events[0]["time_s"] if events else None,
        "offroad_time_s": float(offroad.sum() * dt),
        "lane_departure_time_s": float(departed.sum() * dt),
        "ttc_min_s": float(min(ttc, TTC_CAP_S)),
        "mean_speed": float(v.mean()) if n else 0.0,
        "comfort": {
            "longitudinal_accel": _percentiles(a),
            "longitudinal_jerk": _percentiles(jerk),
            "lateral_accel": _percentiles(lat_a),
            "lateral_jerk": _percentiles(lat_jerk),
        },
        "fallback_time_s": float(fallback.sum() * control_period_s),
        "fallback_fraction": float(fallback.mean()) if fallback.size else 0.0,
        "inference_latency_ms": {"p50": float(np.percentile(lat_ms, 50)), "p95": float(np.percentile(lat_ms, 95)),
                                 "max": float(lat_ms.max())} if lat_ms.size else None,
        "inferences": int(lat_ms.size),
        "skipped": dict(log.skipped),
        "wall_s": round(log.wall_s, 3),
        "files": dict(log.files),
    }


def summarize(episodes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Overall figures of one method over its episodes."""
    if not episodes:
        return {"episodes": 0}
    mean = lambda key: float(np.mean([e[key] for e in episodes]))  # noqa: E731
    lat = [e["inference_latency_ms"]["p50"] for e in episodes if e.get("inference_latency_ms")]
    lat95 = [e["inference_latency_ms"]["p95"] for e in episodes if e.get("inference_latency_ms")]
    ttc = [e["ttc_min_s"] for e in episodes]
    total_prog = sum(e["route_progress_m"] for e in episodes)
    return {
        "episodes": len(episodes),
        "driving_score": mean("driving_score"),
        "collision_free_rate": float(np.mean([not e["collision_any"] for e in episodes])),
        "collision_any": mean("collision_any"),
        "collision_at_fault": mean("collision_at_fault"),
        "offroad": mean("offroad"),
        "offroad_or_collision_at_fault": mean("offroad_or_collision_at_fault"),
        "wrong_lane": mean("wrong_lane"),
        "progress": mean("progress"),
        "route_progress_m": total_prog / len(episodes),
        "dist_to_gt_trajectory": mean("dist_to_gt_trajectory"),
        "dist_to_gt_location": mean("dist_to_gt_location"),
        "min_distance_to_lane_boundary_m": mean("min_distance_to_lane_boundary_m"),
        "offroad_time_s": mean("offroad_time_s"),
        "lane_departure_time_s": mean("lane_departure_time_s"),
        "ttc_min_s_median": float(np.median(ttc)),
        "longitudinal_accel_p95": float(np.mean([e["comfort"]["longitudinal_accel"]["p95"] for e in episodes])),
        "longitudinal_jerk_p95": float(np.mean([e["comfort"]["longitudinal_jerk"]["p95"] for e in episodes])),
        "lateral_accel_p95": float(np.mean([e["comfort"]["lateral_accel"]["p95"] for e in episodes])),
        "lateral_jerk_p95": float(np.mean([e["comfort"]["lateral_jerk"]["p95"] for e in episodes])),
        "fallback_time_s": mean("fallback_time_s"),
        "inference_latency_ms_p50": float(np.median(lat)) if lat else None,
        "inference_latency_ms_p95": float(np.median(lat95)) if lat95 else None,
        "mean_speed": mean("mean_speed"),
        "duration_s": mean("duration_s"),
    }


def overall(per_method: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {m: summarize(per_method.get(m, [])) for m in METHODS if per_method.get(m)}
