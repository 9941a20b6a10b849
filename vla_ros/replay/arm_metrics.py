"""metrics.json of an arm evaluation: action errors per joint and per horizon step, for the policy
and the hold-position baseline, their ratio, skip and warning counts, latency.

For a tick, e[i, j] = predicted[i, j] - commanded[i, j] (action i of the chunk, joint j, due at
t0 + i * action_dt_s; sample 0, the chunk a node executes). MAE is the mean of |e|, RMSE the root
of the mean of e^2, both over the ticks and whatever else is not kept apart (all joints and steps
for `mae`; the steps for `mae_by_joint`; the joints for `mae_by_step`). Units are the joints'
(rad; m for prismatic joints). The hold baseline predicts the joint state at t0 for every step.

Everything except `latency_ms` and `timing` depends only on the bags, config, model and seed.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from vla_ros.replay.arm_evaluator import ArmBagEvaluation
from vla_ros.replay.metrics import latency_summary
from vla_ros.replay.summary import STAGE_ORDER

SCHEMA_VERSION = 1
MODEL, HOLD = "model", "hold"
METHODS = (MODEL, HOLD)
METHOD_LABELS = {MODEL: "model", HOLD: "hold position"}


def error_summary(errors: np.ndarray) -> dict[str, Any]:
    """errors (N ticks, T steps, J joints) -> one method's block (plain JSON types)."""
    if errors.shape[0] == 0:
        return {"ticks": 0, "mae": None, "rmse": None}
    a, sq = np.abs(errors), errors ** 2
    return {
        "ticks": int(errors.shape[0]),
        "mae": float(a.mean()),
        "rmse": float(np.sqrt(sq.mean())),
        "final_mae": float(a[:, -1].mean()),  # the last action of the chunk
        "max_abs": float(a.max()),
        "mae_by_joint": a.mean(axis=(0, 1)).tolist(),
        "rmse_by_joint": np.sqrt(sq.mean(axis=(0, 1))).tolist(),
        "mae_by_step": a.mean(axis=(0, 2)).tolist(),
        "rmse_by_step": np.sqrt(sq.mean(axis=(0, 2))).tolist(),
        "mae_by_step_joint": a.mean(axis=0).tolist(),  # [T][J]
    }


def _ratio(a: Any, b: Any) -> Any:
    if isinstance(a, list):
        return [_ratio(x, y) for x, y in zip(a, b)]
    return None if a is None or not b else a / b


def block(evals: Sequence[ArmBagEvaluation]) -> dict[str, Any]:
    """The metrics of some bags pooled tick by tick."""
    records = [r for e in evals for r in e.records]
    skipped: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    for e in evals:
        skipped.update(e.skipped)
        warnings.update(e.warnings)
    T = evals[0].steps if evals else 0
    J = len(evals[0].joint_names) if evals else 0
    model = np.stack([r.model_error for r in records]) if records else np.zeros((0, T, J))
    hold = np.stack([r.hold_error for r in records]) if records else np.zeros((0, T, J))
    out: dict[str, Any] = {
        "ticks_total": sum(e.ticks_total for e in evals),
        "ticks_evaluated": len(records),
        "ticks_skipped": dict(sorted(skipped.items())),
        "ticks_skipped_total": int(sum(skipped.values())),
        "warnings": {"instruction_truncated": 0, **dict(sorted(warnings.items()))},
        MODEL: error_summary(model),
        HOLD: error_summary(hold),
    }
    out["ratio_to_hold"] = {k: _ratio(out[MODEL].get(k), out[HOLD].get(k))
                            for k in ("mae", "rmse", "final_mae", "mae_by_joint", "rmse_by_joint", "mae_by_step")}
    seen = {k for r in records for k in r.timings_ms}
    stages = [s for s in STAGE_ORDER if s in seen] + sorted(seen - set(STAGE_ORDER))
    out["latency_ms"] = latency_summary({s: [r.timings_ms[s] for r in records if s in r.timings_ms] for s in stages})
    return out


def _timing(evals: Sequence[ArmBagEvaluation], duration_s: float, wall_s: float) -> dict[str, Any]:
    ticks = sum(e.ticks_total for e in evals)
    return {"wall_s": wall_s, "ticks_per_s": ticks / wall_s if wall_s > 0 else None,
            "evaluated_ticks_per_s": sum(e.ticks_evaluated for e in evals) / wall_s if wall_s > 0 else None,
            "realtime_factor": duration_s / wall_s if wall_s > 0 else None}


def build_arm_metrics(evals: Sequence[ArmBagEvaluation], run: dict[str, Any], durations_s: dict[str, float], wall_s: float) -> dict[str, Any]:
    """The whole metrics.json document of an arm evaluation. `durations_s`: replayed sim time per bag."""
    bags: dict[str, Any] = {}
    for e in evals:
        b = block([e])
        b.update(path=e.path, missing_topics=e.missing_topics, error=e.error, commands=e.commands, instructions=e.instructions,
                 joint_states={k: e.sensing.get("ego", {}).get(k) for k in ("topic", "received", "accepted", "drops")},
                 input_drops=e.sensing.get("drops", {}), time_jumps=e.sensing.get("time_jumps", 0),
                 timing=_timing([e], durations_s.get(e.name, 0.0), e.wall_s))
        bags[e.name] = b
    overall = block(evals)
    overall["timing"] = _timing(evals, sum(durations_s.values()), wall_s)
    first = evals[0] if evals else None
    return {
        "schema_version": SCHEMA_VERSION,
        "mode": "chunk",
        "definitions": {
            "errors": "action i of a chunk (sample 0) minus the recorded command due at t0 + i * action_dt_s, per joint, "
                      "in the joints' units (rad; m for prismatic joints)",
            "hold": "the joint state at t0 held for every step",
            "ratio_to_hold": "model / hold (below 1: the policy beats holding still)",
            "action_dt_s": first.dt_s if first else None,
            "steps": first.steps if first else None,
            "horizon_s": round(first.dt_s * (first.steps - 1), 6) if first else None,
            "joint_names": list(first.joint_names) if first else [],
        },
        "run": run,
        "overall": overall,
        "bags": bags,
    }
