"""Ground truth and reasoning labels.

Every ground-truth record describes the world at one instant and names the manoeuvre the ego
actually performs over the next LABEL_HORIZON_S seconds (hindsight from the simulated future,
as Chain-of-Causation annotations are made), with the causes that explain it. The sentence
grammar (kept small on purpose: a tokenizer and a small model learn it later):

    sentence := causes "; " action " and keep lane."        (first letter capitalised)
    causes   := cause | cause " and " cause
    cause    := ["sharp "] ("left" | "right") " curve ahead"
              | "road straightens ahead"
              | "lead vehicle " ("stopped" | "braking" | "slower" | "moving off" | "speeding up" | "ahead")
              | "vehicle cutting in from the left"
              | "speed limit " ("drops" | "rises") " to " LIMIT      (LIMIT: km/h, e.g. 50)
              | "road clear"
    action   := "stop" | "slow down" | "speed up" | "follow the lead vehicle" | "keep speed"

Example: "Right curve ahead and lead vehicle braking; slow down and keep lane."
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from vla_ros.replay.labels import ACTION_WORDS  # maneuver -> action phrase, shared with the evaluation
from vla_ros.sim.ego import EGO_WIDTH
from vla_ros.sim.world import REASONS, STEP_NS, Timeline, VehicleSnap, ego_front_s

LABEL_HORIZON_S = 3.0  # the action is what the ego does over this much future
CURVATURE_DISTANCES_M = (0, 10, 20, 30, 50, 80, 120)
CURVE_KAPPA = 1 / 500  # |curvature| that counts as a curve
SHARP_KAPPA = 1 / 150
SPEED_CHANGE = 1.0  # m/s over the horizon that counts as slowing down / speeding up
ACTIONS = ("stop", "slow_down", "speed_up", "follow", "keep_speed")


def _lead(t: Timeline, k: int) -> tuple[VehicleSnap, float] | None:
    """Nearest vehicle ahead overlapping the ego's corridor and its gap (ego front to its rear)."""
    s = float(t.ego[k, 6])
    d = float(t.ego[k, 7])
    front = ego_front_s(s)
    best = None
    for veh in t.traffic[k]:
        if abs(veh.d - d) >= veh.width / 2 + EGO_WIDTH / 2 + 0.2:
            continue
        gap = veh.s - veh.length / 2 - front
        if gap > -0.5 and (best is None or gap < best[1]):
            best = (veh, gap)
    return best


def _cut_in(t: Timeline, k: int) -> tuple[VehicleSnap, float] | None:
    """A vehicle changing into the ego lane ahead (within 50 m)."""
    s = float(t.ego[k, 6])
    front = ego_front_s(s)
    for veh in t.traffic[k]:
        gap = veh.s - veh.length / 2 - front
        if veh.changing_lane and veh.target_lane == 0 and -2.0 < gap < 50.0:
            return veh, gap
    return None


def maneuver(t: Timeline, k: int, lead: tuple[VehicleSnap, float] | None) -> str:
    """The ego's longitudinal action over the next LABEL_HORIZON_S seconds (from the future)."""
    h = int(round(LABEL_HORIZON_S * 1e9 / STEP_NS))
    v = t.ego[k : k + h + 1, 3]
    v_now, v_end = float(v[0]), float(v[-1])
    if v_end < 0.5 and (v_now < 0.5 or float(v.min()) < 0.5):
        return "stop"
    if v_end - v_now < -SPEED_CHANGE:
        return "slow_down"
    if v_end - v_now > SPEED_CHANGE:
        return "speed_up"
    if lead is not None and lead[1] < max(40.0, 3.0 * v_now):
        return "follow"
    return "keep_speed"


def _curve_cause(kappas: np.ndarray) -> str | None:
    i = int(np.argmax(np.abs(kappas)))
    k = float(kappas[i])
    if abs(k) < CURVE_KAPPA:
        return None
    return ("sharp " if abs(k) >= SHARP_KAPPA else "") + ("left" if k > 0 else "right") + " curve ahead"


def causes_for(t: Timeline, k: int, action: str, lead: tuple[VehicleSnap, float] | None, cut_in: tuple[VehicleSnap, float] | None) -> list[str]:
    """Up to two causes, the one that explains the action first."""
    road = t.plan.road
    s, v = float(t.ego[k, 6]), float(t.ego[k, 3])
    look = max(40.0, 4.0 * v)
    ahead = np.asarray(road.curvature(s + np.linspace(0.0, look, 21)))
    curve = _curve_cause(ahead)
    h = int(round(LABEL_HORIZON_S * 1e9 / STEP_NS))
    reasons = [REASONS[r] for r in t.reason[k : k + h + 1]]
    limit_cause = None
    nxt = road.next_limit_change(s)
    now_kph = int(road.speed_limit_kph(s))
    if nxt is not None and nxt[0] - s < max(80.0, 5.0 * v):
        limit_cause = f"speed limit {'drops' if nxt[1] < now_kph else 'rises'} to {nxt[1]}"
    else:
        prev = road.previous_limit_change(s)
        if prev is not None and s - prev[0] < 80.0:
            limit_cause = f"speed limit {'drops' if prev[2] < prev[1] else 'rises'} to {prev[2]}"
    lead_cause = None
    if lead is not None and lead[1] < max(60.0, 4.0 * v):
        veh = lead[0]
        if veh.v < 0.5:
            lead_cause = "lead vehicle stopped"
        elif veh.a < -0.8:
            lead_cause = "lead vehicle braking"
        elif v < 1.0 and veh.a > 0.3:
            lead_cause = "lead vehicle moving off"
        elif veh.v < v - 1.0:
            lead_cause = "lead vehicle slower"
        elif veh.a > 0.3 and action == "speed_up":
            lead_cause = "lead vehicle speeding up"
        else:
            lead_cause = "lead vehicle ahead"
    cut_cause = "vehicle cutting in from the left" if cut_in is not None else None

    ordered: list[str | None]
    if action in ("stop", "slow_down"):
        ordered = [cut_cause, lead_cause if "lead" in reasons else None,
                   limit_cause if limit_cause and "drops" in limit_cause else None,
                   curve if "curve" in reasons else None, lead_cause, curve]
    elif action == "speed_up":
        straight = None
        if curve is None and abs(float(road.curvature(s))) > CURVE_KAPPA * 0.5:
            straight = "road straightens ahead"
        if curve is None and float(np.max(np.abs(np.asarray(road.curvature(s - np.linspace(0, 40, 9)))))) >= CURVE_KAPPA:
            straight = "road straightens ahead"
        ordered = [lead_cause if lead_cause in ("lead vehicle moving off", "lead vehicle speeding up") else None,
                   limit_cause if limit_cause and "rises" in limit_cause else None, straight, lead_cause, curve]
    elif action == "follow":
        ordered = [lead_cause, cut_cause, curve]
    else:
        ordered = [curve, lead_cause, limit_cause]
    if action in ("stop", "slow_down") and curve is None and "curve" in reasons:
        # The planner brakes for a curve beyond the sentence's look-ahead: name it anyway.
        ordered.append(_curve_cause(np.asarray(road.curvature(s + np.linspace(0.0, 160.0, 41)))))
    out: list[str] = []
    for c in ordered:
        if c and c not in out:
            out.append(c)
        if len(out) == 2:
            break
    return out or ["road clear"]


def sentence(causes: list[str], action: str) -> str:
    text = " and ".join(causes) + "; " + ACTION_WORDS[action] + " and keep lane."
    return text[0].upper() + text[1:]


def ground_truth(t: Timeline, k: int) -> dict[str, Any]:
    """The ground-truth record at step k (JSON-ready; floats rounded for compact messages)."""
    road = t.plan.road
    x, y, yaw, v, a, yaw_rate, s, d, _ = (float(c) for c in t.ego[k])
    lead = _lead(t, k)
    cut = _cut_in(t, k)
    action = maneuver(t, k, lead)
    causes = causes_for(t, k, action, lead, cut)
    nxt = road.next_limit_change(s)
    r = lambda val, n=3: round(float(val), n)  # noqa: E731
    return {
        "stamp_ns": t.step_time_ns(k),
        "scenario": t.plan.section_at(s).kind,
        "ego": {"x": r(x), "y": r(y), "yaw": r(yaw, 5), "speed": r(v), "accel": r(a), "yaw_rate": r(yaw_rate, 5),
                "s": r(s, 2), "lateral_offset": r(d)},
        "road": {
            "curvature_ahead": {str(m): r(road.curvature(s + m), 6) for m in CURVATURE_DISTANCES_M},
            "speed_limit_kph": int(road.speed_limit_kph(s)),
            "next_speed_limit": None if nxt is None else {"kph": nxt[1], "distance": r(nxt[0] - s, 1)},
        },
        "lead": None if lead is None else {
            "gap": r(lead[1], 2), "speed": r(lead[0].v), "accel": r(lead[0].a), "braking": lead[0].braking, "role": lead[0].role,
        },
        "cut_in": None if cut is None else {"gap": r(cut[1], 2), "speed": r(cut[0].v), "lateral_offset": r(cut[0].d)},
        "planner": REASONS[int(t.reason[k])],
        "maneuver": action,
        "lateral": "keep_lane",
        "causes": causes,
        "reasoning": sentence(causes, action),
    }


def ground_truth_json(t: Timeline, k: int) -> str:
    return json.dumps(ground_truth(t, k), separators=(",", ":"), sort_keys=False)


__all__ = ["ACTIONS", "LABEL_HORIZON_S", "ground_truth", "ground_truth_json", "sentence"]
