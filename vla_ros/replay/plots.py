"""Report figures as PNG bytes (matplotlib, Agg backend: no display needed, same output on every
machine with the same matplotlib)."""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless, deterministic rendering
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from vla_ros.replay.camera_model import CameraModel  # noqa: E402
from vla_ros.replay.tick_record import MODEL, TickRecord  # noqa: E402
from vla_ros.replay.metrics import HORIZONS_S  # noqa: E402

COLORS = {MODEL: "#1f5fbf", "constant_velocity": "#e07b00", "constant_velocity_yaw_rate": "#8e3fb0", "ground_truth": "#2a9d3a", "history": "#555555"}
LABELS = {MODEL: "model", "constant_velocity": "const. velocity", "constant_velocity_yaw_rate": "const. velocity + yaw rate"}
_META = {"Software": None}  # no matplotlib version in the PNG: identical bytes across runs


def _png(fig: Any, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata=_META)
    plt.close(fig)
    return buf.getvalue()


def error_vs_horizon(by_step: Mapping[str, Sequence[float]], dt_s: float) -> bytes:
    """Mean displacement error per waypoint (method -> (T,) metres) against the horizon."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for method, values in by_step.items():
        if not values:
            continue
        t = (np.arange(len(values)) + 1) * dt_s
        ax.plot(t, values, label=LABELS.get(method, method), color=COLORS.get(method), lw=2 if method == MODEL else 1.5,
                ls="-" if method == MODEL else "--")
        marks = [int(round(h / dt_s)) - 1 for h in HORIZONS_S if int(round(h / dt_s)) - 1 < len(values)]
        ax.plot(t[marks], np.asarray(values)[marks], "o", color=COLORS.get(method), ms=4)
    ax.set_xlabel("horizon (s)")
    ax.set_ylabel("mean displacement error (m)")
    ax.set_title("Error vs horizon")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def latency_histogram(samples_ms: Mapping[str, Sequence[float]], stages: Sequence[str] = ("total", "policy")) -> bytes:
    """Histogram of per-tick latency for the given stages."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    present = [s for s in stages if samples_ms.get(s)]
    if present:
        allv = np.concatenate([np.asarray(samples_ms[s], dtype=float) for s in present])
        bins = np.linspace(0.0, float(np.percentile(allv, 99.5)) * 1.05 + 1e-3, 40)
        for s in present:
            v = np.clip(np.asarray(samples_ms[s], dtype=float), 0, bins[-1])
            ax.hist(v, bins=bins, alpha=0.6, label=f"{s} (p50 {np.percentile(v, 50):.1f} ms)")
        ax.legend()
    ax.set_xlabel("milliseconds per tick (last bin holds everything above)")
    ax.set_ylabel("ticks")
    ax.set_title("Latency per tick")
    ax.grid(alpha=0.3)
    return _png(fig)


def latency_breakdown(latency: Mapping[str, Mapping[str, Any]]) -> bytes:
    """p50 / p95 / p99 of each stage as grouped horizontal bars."""
    stages = [s for s, v in latency.items() if v.get("p50") is not None]
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(len(stages), 2) + 1.2))
    y = np.arange(len(stages))
    for j, (q, c) in enumerate((("p50", "#1f5fbf"), ("p95", "#e07b00"), ("p99", "#c0392b"))):
        ax.barh(y + (j - 1) * 0.27, [latency[s][q] for s in stages], height=0.27, color=c, label=q)
    ax.set_yticks(y, stages)
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds")
    ax.set_title("Latency by stage")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    return _png(fig)


def _bev(ax: Any, rec: TickRecord) -> None:
    """Bird's-eye view in the t0 ego frame: forward up, left to the left."""
    def draw(xyz: np.ndarray, **kw: Any) -> None:
        ax.plot(-xyz[:, 1], xyz[:, 0], **kw)

    draw(rec.history_xyz, color=COLORS["history"], lw=2, label="history")
    for s in range(1, rec.pred_xyz.shape[0]):
        draw(rec.pred_xyz[s], color=COLORS[MODEL], lw=1, alpha=0.3)
    for name, pred in rec.baselines.items():
        draw(pred, color=COLORS[name], lw=1.3, ls="--", label=LABELS[name])
    draw(rec.future.xyz, color=COLORS["ground_truth"], lw=2.5, label="ground truth")
    draw(rec.pred_xyz[0], color=COLORS[MODEL], lw=2, label="model")
    ax.plot([0], [0], marker="^", color="k", ms=8)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("left  ←  y (m)  →  right")
    ax.set_ylabel("x forward (m)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def _camera(ax: Any, rec: TickRecord, camera: CameraModel | None, camera_name: str | None) -> None:
    if rec.front_jpeg is None:
        ax.text(0.5, 0.5, "no camera image kept", ha="center", va="center")
        ax.axis("off")
        return
    img = np.asarray(Image.open(io.BytesIO(rec.front_jpeg)).convert("RGB"))
    h, w = img.shape[:2]
    ax.imshow(img)
    note = "path not projected: no CameraInfo / /tf_static in the bag"
    if camera is not None:
        note = "projected: model (blue), ground truth (green)"
        for xyz, color in ((rec.future.xyz, COLORS["ground_truth"]), (rec.pred_xyz[0], COLORS[MODEL])):
            pts = np.vstack([np.zeros((1, 3)), xyz])
            uv, depth = camera.project(pts, (h, w))
            ok = depth > 0.5
            ax.plot(np.where(ok, uv[:, 0], np.nan), np.where(ok, uv[:, 1], np.nan), color=color, lw=2)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_title(f"{camera_name or 'camera'} at t0", fontsize=9)
    ax.set_xlabel(note, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def tick_figure(rec: TickRecord, camera: CameraModel | None, camera_name: str | None) -> bytes:
    """Bird's-eye view next to the front camera image of one tick."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1, 1.3]})
    _bev(a, rec)
    _camera(b, rec, camera, camera_name)
    fig.suptitle(f"{rec.bag}  tick {rec.index}  t0 = {rec.t0_ns / 1e9:.2f} s  model ADE {rec.ade:.2f} m", fontsize=10)
    return _png(fig, dpi=90)
