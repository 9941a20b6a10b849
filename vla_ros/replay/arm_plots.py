"""Figures of an arm evaluation as PNG bytes (the same Agg rendering as plots.py)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vla_ros.replay.arm_evaluator import ArmTickRecord
from vla_ros.replay.plots import _png, plt

COLORS = {"model": "#1f5fbf", "hold": "#e07b00", "commanded": "#2a9d3a"}


def _grid(joints: int) -> tuple[Any, np.ndarray]:
    cols = min(3, joints)
    rows = -(-joints // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.5 * rows), squeeze=False, sharex=True)
    for ax in axes.flat[joints:]:
        ax.axis("off")
    return fig, axes


def chunk_figure(rec: ArmTickRecord, joint_names: Sequence[str], dt_s: float) -> bytes:
    """One tick: per joint, the recorded commands, the predicted chunk (other samples faint) and
    the held state, against time after t0."""
    fig, axes = _grid(len(joint_names))
    t = np.arange(rec.commanded.shape[0]) * dt_s
    for j, (name, ax) in enumerate(zip(joint_names, axes.flat)):
        ax.plot(t, rec.commanded[:, j], color=COLORS["commanded"], lw=2.2, label="commanded (recorded)")
        for s in range(1, rec.predicted.shape[0]):
            ax.plot(t, rec.predicted[s, :, j], color=COLORS["model"], lw=0.8, alpha=0.3)
        ax.plot(t, rec.predicted[0, :, j], color=COLORS["model"], lw=1.6, label="predicted")
        ax.axhline(rec.state[j], color=COLORS["hold"], lw=1.2, ls="--", label="hold (state at t0)")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("time after t0 (s)")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{rec.bag}  tick {rec.index}  t0 = {rec.t0_ns / 1e9:.2f} s  model MAE {rec.mae:.3f}", fontsize=10)
    return _png(fig, dpi=90)


def error_by_step(model: Sequence[Sequence[float]], hold: Sequence[Sequence[float]], joint_names: Sequence[str], dt_s: float) -> bytes:
    """Per joint: MAE of the model and of the hold baseline at each step of the chunk ([T][J] each)."""
    m, h = np.asarray(model, dtype=float), np.asarray(hold, dtype=float)
    fig, axes = _grid(len(joint_names))
    t = np.arange(m.shape[0]) * dt_s
    for j, (name, ax) in enumerate(zip(joint_names, axes.flat)):
        ax.plot(t, m[:, j], color=COLORS["model"], lw=1.8, label="model")
        ax.plot(t, h[:, j], color=COLORS["hold"], lw=1.5, ls="--", label="hold position")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("horizon (s after t0)")
    for ax in axes[:, 0]:
        ax.set_ylabel("MAE")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle("Mean absolute error vs horizon step", fontsize=10)
    return _png(fig)


def model_vs_hold(model_by_joint: Sequence[float], hold_by_joint: Sequence[float], joint_names: Sequence[str]) -> bytes:
    """MAE per joint, model next to the hold baseline, with model / hold above each pair."""
    m, h = np.asarray(model_by_joint, dtype=float), np.asarray(hold_by_joint, dtype=float)
    x = np.arange(len(joint_names))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(x) + 2), 3.6))
    ax.bar(x - 0.2, m, width=0.4, color=COLORS["model"], label="model")
    ax.bar(x + 0.2, h, width=0.4, color=COLORS["hold"], label="hold position")
    for i in x:
        if h[i] > 0:
            ax.text(i, max(m[i], h[i]) * 1.02, f"{m[i] / h[i]:.2f}x", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, max(float(np.max(m, initial=0)), float(np.max(h, initial=0))) * 1.15 + 1e-9)  # room for the ratios
    ax.set_xticks(x, joint_names, rotation=20 if len(x) > 6 else 0)
    ax.set_ylabel("MAE over the chunk")
    ax.set_title("Model vs hold-position baseline per joint (ratio above)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return _png(fig)
