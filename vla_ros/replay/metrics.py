"""Open-loop trajectory metrics and latency statistics.

Errors are planar (x, y in the t0 ego frame): the height of a car's path is not what a driving
policy is judged on, and odometry z drifts. For every waypoint i the error vector
e_i = pred_i - gt_i is also split along the recorded heading at that waypoint (longitudinal:
ahead/behind, + = ahead) and across it (lateral: + = left of the recorded path).

Per tick: ADE = mean_i |e_i|, FDE = |e_T|; ADE/FDE at a horizon h use the waypoints up to
t0 + h. A tick is a miss when its FDE exceeds MISS_THRESHOLD_M. With K samples, the first sample
is the trajectory the node would publish (ADE/FDE); minADE/minFDE take the best sample per tick.
Aggregates are means over ticks (rates for miss_rate).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_ros.replay.ground_truth import Future

HORIZONS_S = (1.0, 2.0, 3.0, 5.0)
MISS_THRESHOLD_M = 2.0
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class MethodErrors:
    """One method at one tick. Arrays (S, T): S samples (1 for baselines), T waypoints."""

    displacement: np.ndarray
    lateral: np.ndarray
    longitudinal: np.ndarray

    @property
    def ade(self) -> float:
        return float(self.displacement[0].mean())

    @property
    def fde(self) -> float:
        return float(self.displacement[0, -1])


def trajectory_errors(pred_xyz: np.ndarray, future: Future) -> MethodErrors:
    """pred (T, 3) or (S, T, 3) in the t0 ego frame vs the recorded future (T waypoints)."""
    pred = np.asarray(pred_xyz, dtype=np.float64)
    if pred.ndim == 2:
        pred = pred[None]
    gt = future.xyz
    if pred.shape[1] != gt.shape[0]:
        raise ValueError(f"prediction has {pred.shape[1]} waypoints, ground truth {gt.shape[0]}")
    err = pred[:, :, :2] - gt[None, :, :2]  # (S, T, 2)
    h = future.heading  # (T, 2)
    lon = err[..., 0] * h[:, 0] + err[..., 1] * h[:, 1]
    lat = -err[..., 0] * h[:, 1] + err[..., 1] * h[:, 0]
    return MethodErrors(np.hypot(err[..., 0], err[..., 1]), lat, lon)


def horizon_index(h_s: float, dt_s: float) -> int:
    """Index of the waypoint at t0 + h (waypoint i lies at t0 + (i+1) dt)."""
    return int(round(h_s / dt_s)) - 1


def summarize(ticks: Sequence[MethodErrors], dt_s: float, with_min: bool = False) -> dict[str, Any]:
    """Aggregate one method over ticks -> the metrics.json block (plain JSON types).

    Keys: ade, fde, ade_<h>s / fde_<h>s for each horizon within the prediction, lateral_ade,
    lateral_fde, longitudinal_ade, longitudinal_fde (mean absolute metres), miss_rate,
    displacement_by_step_m (mean |e_i| per waypoint), ticks; with_min adds min_ade, min_fde.
    """
    out: dict[str, Any] = {"ticks": len(ticks)}
    if not ticks:
        return out | {"ade": None, "fde": None, "miss_rate": None}
    disp = np.stack([t.displacement for t in ticks])  # (N, S, T)
    lat = np.abs(np.stack([t.lateral[0] for t in ticks]))  # (N, T)
    lon = np.abs(np.stack([t.longitudinal[0] for t in ticks]))
    first = disp[:, 0]  # (N, T)
    steps = first.shape[1]
    fde = first[:, -1]
    out["ade"] = float(first.mean())
    out["fde"] = float(fde.mean())
    for h in HORIZONS_S:
        i = horizon_index(h, dt_s)
        if 0 <= i < steps:
            out[f"ade_{h:g}s"] = float(first[:, : i + 1].mean())
            out[f"fde_{h:g}s"] = float(first[:, i].mean())
    if with_min:
        out["min_ade"] = float(disp.mean(axis=2).min(axis=1).mean())
        out["min_fde"] = float(disp[:, :, -1].min(axis=1).mean())
    out["lateral_ade"] = float(lat.mean())
    out["lateral_fde"] = float(lat[:, -1].mean())
    out["longitudinal_ade"] = float(lon.mean())
    out["longitudinal_fde"] = float(lon[:, -1].mean())
    out["miss_rate"] = float(np.mean(fde > MISS_THRESHOLD_M))
    out["displacement_by_step_m"] = [float(v) for v in first.mean(axis=0)]
    return out


def latency_summary(samples_ms: Mapping[str, Iterable[float]]) -> dict[str, dict[str, float | int | None]]:
    """stage -> {p50, p95, p99, max, mean, count} in milliseconds."""
    out: dict[str, dict[str, float | int | None]] = {}
    for stage, values in samples_ms.items():
        v = np.asarray(list(values), dtype=np.float64)
        if v.size == 0:
            out[stage] = {"p50": None, "p95": None, "p99": None, "max": None, "mean": None, "count": 0}
            continue
        stats: dict[str, float | int | None] = {f"p{q}": float(np.percentile(v, q)) for q in PERCENTILES}
        stats.update(max=float(v.max()), mean=float(v.mean()), count=int(v.size))
        out[stage] = stats
    return out
