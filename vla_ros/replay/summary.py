"""metrics.json: per-bag and overall blocks built from the bags' evaluations.

Everything except `latency_ms` and `timing` blocks depends only on the inputs, the config, the
model and the seed, so two runs of the same command give identical values there.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from vla_ros.replay.baselines import BASELINES
from vla_ros.replay.evaluator import MODEL, BagEvaluation, TickRecord
from vla_ros.replay.labels import maneuver_of
from vla_ros.replay.metrics import MISS_THRESHOLD_M, latency_summary, summarize

SCHEMA_VERSION = 1
METHODS = (MODEL, *BASELINES)
METHOD_LABELS = {MODEL: "model", "constant_velocity": "constant velocity", "constant_velocity_yaw_rate": "constant velocity + yaw rate"}
# Report order of the latency stages; stages a backend does not time are simply absent.
STAGE_ORDER = ("stack", "preprocess", "vision", "prefill", "reasoning", "denoise", "decode", "policy", "total")


def _stages(records: Sequence[TickRecord]) -> list[str]:
    seen = {k for r in records for k in r.timings_ms}
    return [s for s in STAGE_ORDER if s in seen] + sorted(seen - set(STAGE_ORDER))


def block(evals: Sequence[BagEvaluation]) -> dict[str, Any]:
    """The metrics of some bags pooled tick by tick (means over all their evaluated ticks)."""
    records = [r for e in evals for r in e.records]
    skipped: Counter[str] = Counter()
    for e in evals:
        skipped.update(e.skipped)
    dt = evals[0].dt_s if evals else 0.1
    samples = max((e.samples for e in evals), default=1)
    out: dict[str, Any] = {
        "ticks_total": sum(e.ticks_total for e in evals),
        "ticks_evaluated": len(records),
        "ticks_skipped": dict(sorted(skipped.items())),
        "ticks_skipped_total": int(sum(skipped.values())),
    }
    for method in METHODS:
        out[method] = summarize([r.errors[method] for r in records], dt, with_min=(method == MODEL and samples > 1))
    out[MODEL]["samples"] = samples
    reasoning = reasoning_agreement(records)
    if reasoning is not None:
        out["reasoning"] = reasoning
    stages = _stages(records)
    out["latency_ms"] = latency_summary({s: [r.timings_ms[s] for r in records if s in r.timings_ms] for s in stages})
    return out


def reasoning_agreement(records: Sequence[TickRecord]) -> dict[str, Any] | None:
    """How often the generated sentence names the recorded maneuver label, over the ticks that
    have both (None when there are none: no reasoning, or a bag without labels)."""
    scored = [(r.label_maneuver, maneuver_of(r.reasoning)) for r in records if r.reasoning is not None and r.label_maneuver]
    if not scored:
        return None
    by: dict[str, dict[str, int]] = {}
    for label, named in scored:
        entry = by.setdefault(label, {"ticks": 0, "agree": 0})
        entry["ticks"] += 1
        entry["agree"] += int(named == label)
    agree = sum(e["agree"] for e in by.values())
    return {
        "ticks": len(scored),
        "agree": agree,
        "maneuver_agreement": agree / len(scored),
        "unparsed": sum(1 for _, named in scored if named is None),
        "by_maneuver": dict(sorted(by.items())),
    }


def _timing(evals: Sequence[BagEvaluation], bag_duration_s: float, wall_s: float) -> dict[str, Any]:
    ticks = sum(e.ticks_total for e in evals)
    evaluated = sum(e.ticks_evaluated for e in evals)
    return {
        "wall_s": wall_s,
        "ticks_per_s": ticks / wall_s if wall_s > 0 else None,
        "evaluated_ticks_per_s": evaluated / wall_s if wall_s > 0 else None,
        "realtime_factor": bag_duration_s / wall_s if wall_s > 0 else None,
    }


def build_metrics(evals: Sequence[BagEvaluation], run: dict[str, Any], durations_s: dict[str, float], wall_s: float) -> dict[str, Any]:
    """The whole metrics.json document. `durations_s`: replayed sim time per bag name."""
    bags: dict[str, Any] = {}
    for e in evals:
        b = block([e])
        b.update(
            path=e.path,
            predictions_bag=e.predictions_bag,
            missing_topics=e.missing_topics,
            error=e.error,
            odometry=e.odometry,
            **({"navigation": e.navigation} if e.navigation else {}),
            input_drops=e.sensing.get("drops", {}),
            time_jumps=e.sensing.get("time_jumps", 0),
            front_camera=e.front_camera,
            camera_projection=e.camera is not None,
            timing=_timing([e], durations_s.get(e.name, 0.0), e.wall_s),
        )
        bags[e.name] = b
    overall = block(evals)
    overall["timing"] = _timing(evals, sum(durations_s.values()), wall_s)
    return {
        "schema_version": SCHEMA_VERSION,
        "definitions": {
            "errors": "planar (x, y) in the t0 ego frame, metres; ade/fde from the first sample",
            "miss_threshold_m": MISS_THRESHOLD_M,
            "horizon_s": round(evals[0].dt_s * evals[0].waypoints, 6) if evals else None,
            "dt_s": evals[0].dt_s if evals else None,
        },
        "run": run,
        "overall": overall,
        "bags": bags,
    }


def strip_nondeterministic(metrics: dict[str, Any]) -> dict[str, Any]:
    """A copy without the blocks that depend on machine speed (latency_ms, timing)."""
    if isinstance(metrics, dict):
        return {k: strip_nondeterministic(v) for k, v in metrics.items() if k not in ("latency_ms", "timing")}
    if isinstance(metrics, list):
        return [strip_nondeterministic(v) for v in metrics]
    return metrics
