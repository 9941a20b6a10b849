"""The report of an arm evaluation (report.md + plots/, report.html), rendered by report.py."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vla_ros.replay import arm_plots, plots
from vla_ros.replay.arm_evaluator import ArmBagEvaluation, ArmTickRecord
from vla_ros.replay.arm_metrics import HOLD, METHOD_LABELS, METHODS, MODEL
from vla_ros.replay.report import Element, Figure, Heading, Para, Table, _fmt, run_rows, write_elements


def chosen_ticks(evals: Sequence[ArmBagEvaluation]) -> list[tuple[str, ArmTickRecord]]:
    """(label, record): the worst tick by model MAE, the one at the median, and the best."""
    records = [r for e in evals for r in e.records]
    if not records:
        return []
    order = np.argsort([-r.mae for r in records], kind="stable")
    picks = {"worst": int(order[0]), "typical": int(order[len(order) // 2]), "best": int(order[-1])}
    seen: set[int] = set()
    out = []
    for label, i in picks.items():
        if i not in seen:
            seen.add(i)
            out.append((label, records[i]))
    return out


def build_arm_elements(metrics: dict[str, Any], evals: Sequence[ArmBagEvaluation]) -> list[Element]:
    run, overall, d = metrics["run"], metrics["overall"], metrics["definitions"]
    joints = d["joint_names"]
    els: list[Element] = [Heading("vla_ros open-loop evaluation: robot arm (action chunks)", 1)]
    els.append(Table(["", ""], [
        *run_rows(run, f"noise scale {run['noise_scale']}"),
        ["chunk", f"{d['steps']} actions, {d['action_dt_s']} s apart (horizon {d['horizon_s']} s); joints {', '.join(joints)}"],
        ["bags", ", ".join(metrics["bags"])],
    ]))
    timing = overall.get("timing", {})
    warn = overall["warnings"]
    els.append(Para(
        f"{overall['ticks_evaluated']} of {overall['ticks_total']} ticks evaluated ({overall['ticks_skipped_total']} skipped); "
        f"{_fmt(timing.get('ticks_per_s'), 1)} ticks/s, {_fmt(timing.get('realtime_factor'), 2)}x real time. "
        f"Errors: action i of the chunk minus the recorded command due at t0 + i x {d['action_dt_s']} s, in the joints' units; "
        f"the hold baseline keeps the joint state at t0. Instructions cut at the model's token budget: "
        f"{warn.get('instruction_truncated', 0)} tick(s)."))

    els.append(Heading("Summary: model vs hold position"))
    rows = []
    for m in METHODS:
        b = overall[m]
        rows.append([METHOD_LABELS[m], _fmt(b.get("mae"), 4), _fmt(b.get("rmse"), 4), _fmt(b.get("final_mae"), 4), _fmt(b.get("max_abs"), 4)])
    r = overall["ratio_to_hold"]
    rows.append(["model / hold", _fmt(r.get("mae")), _fmt(r.get("rmse")), _fmt(r.get("final_mae")), "–"])
    els.append(Table(["method", "MAE", "RMSE", "MAE last action", "max |error|"], rows))
    if overall[MODEL].get("mae_by_joint"):
        els.append(Table(["joint", "model MAE", "hold MAE", "model / hold", "model RMSE", "hold RMSE"], [
            [name, _fmt(overall[MODEL]["mae_by_joint"][j], 4), _fmt(overall[HOLD]["mae_by_joint"][j], 4), _fmt(r["mae_by_joint"][j]),
             _fmt(overall[MODEL]["rmse_by_joint"][j], 4), _fmt(overall[HOLD]["rmse_by_joint"][j], 4)] for j, name in enumerate(joints)]))
        els.append(Figure("model_vs_hold.png", arm_plots.model_vs_hold(overall[MODEL]["mae_by_joint"], overall[HOLD]["mae_by_joint"], joints),
                          "MAE per joint over the whole chunk: model vs holding the state at t0."))
        els.append(Heading("Error vs horizon step"))
        els.append(Figure("error_vs_horizon.png", arm_plots.error_by_step(overall[MODEL]["mae_by_step_joint"], overall[HOLD]["mae_by_step_joint"],
                                                                          joints, d["action_dt_s"]),
                          "Mean absolute error at each action of the chunk, per joint."))

    els.append(Heading("Bags"))
    brows = []
    for name, b in metrics["bags"].items():
        notes = ", ".join(f"{k} x{v}" for k, v in b["ticks_skipped"].items()) or "none"
        drops = ", ".join(f"{k} x{v}" for k, v in (b["joint_states"].get("drops") or {}).items())
        if drops:
            notes += f"; joint states dropped: {drops}"
        if b["commands"].get("dropped"):
            notes += "; commands dropped: " + ", ".join(f"{k} x{v}" for k, v in b["commands"]["dropped"].items())
        if b.get("error"):
            notes += f"; error: {b['error']}"
        if b.get("missing_topics"):
            notes += f"; missing topics: {', '.join(b['missing_topics'])}"
        brows.append([name, b["ticks_evaluated"], b["ticks_total"], _fmt(b[MODEL].get("mae"), 4), _fmt(b[HOLD].get("mae"), 4),
                      b["warnings"].get("instruction_truncated", 0), notes])
    els.append(Table(["bag", "evaluated", "ticks", "model MAE", "hold MAE", "instructions cut", "skipped / dropped"], brows))

    lat = overall["latency_ms"]
    if lat:
        els.append(Heading("Latency"))
        els.append(Table(["stage", "p50 ms", "p95 ms", "p99 ms", "max ms", "mean ms"],
                         [[s, _fmt(v["p50"], 1), _fmt(v["p95"], 1), _fmt(v["p99"], 1), _fmt(v["max"], 1), _fmt(v["mean"], 1)] for s, v in lat.items()]))
        samples = {s: [rec.timings_ms[s] for e in evals for rec in e.records if s in rec.timings_ms] for s in lat}
        els.append(Figure("latency_histogram.png", plots.latency_histogram(samples), "Per-tick latency: total = stack assembly + policy."))

    picks = chosen_ticks(evals)
    if picks:
        els.append(Heading("Commanded vs predicted: worst, typical and best ticks"))
        for n, (label, rec) in enumerate(picks):
            hold = float(np.abs(rec.hold_error).mean())
            els.append(Figure(f"chunk_{n:02d}_{label}.png", arm_plots.chunk_figure(rec, joints, d["action_dt_s"]),
                              f"{label}: {rec.bag} tick {rec.index}, t0 {rec.t0_ns / 1e9:.3f} s, instruction {rec.instruction[:80]!r}. "
                              f"MAE model {rec.mae:.4f}, hold {hold:.4f}."))
    return els


def write_arm_report(out_dir: str | Path, metrics: dict[str, Any], evals: Sequence[ArmBagEvaluation]) -> tuple[Path, Path]:
    return write_elements(out_dir, build_arm_elements(metrics, evals))
