"""report.html (and report.md) of a rollout: the score table of the model and both baselines,
the per-episode table, and per episode a plot of speed, lateral position and progress for the
three drivers, the collisions, and its animation. Built from the same report elements as the
open-loop evaluation's report (`vla_ros.replay.report`)."""
from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vla_ros.replay.report import Figure, Heading, Para, Table, render_html, render_markdown  # noqa: E402
from vla_ros.sim.road import EDGE_D, lane_d  # noqa: E402
from vla_ros.sim.rollout.log import METHOD_LABELS, METHODS  # noqa: E402

COLORS = {"model": "#1f5fbf", "expert": "#2a9d3a", "constant_velocity": "#e07b00"}
_VIDEO = "@@video:{}@@"

# (label, key in the overall summary, digits)
SCORE_ROWS = (
    ("driving score (AlpaSim scene score)", "driving_score", 3),
    ("episodes without any collision", "collision_free_rate", 2),
    ("collision_at_fault (share of episodes)", "collision_at_fault", 2),
    ("offroad (share of episodes)", "offroad", 2),
    ("progress (of the expert's)", "progress", 3),
    ("route progress (m, mean)", "route_progress_m", 1),
    ("dist_to_gt_trajectory (m, mean of max)", "dist_to_gt_trajectory", 2),
    ("lane departure time (s, mean)", "lane_departure_time_s", 2),
    ("off-road time (s, mean)", "offroad_time_s", 2),
    ("time-to-collision min (s, median)", "ttc_min_s_median", 2),
    ("|longitudinal accel| p95 (m/s^2)", "longitudinal_accel_p95", 2),
    ("|longitudinal jerk| p95 (m/s^3)", "longitudinal_jerk_p95", 2),
    ("|lateral accel| p95 (m/s^2)", "lateral_accel_p95", 2),
    ("|lateral jerk| p95 (m/s^3)", "lateral_jerk_p95", 2),
    ("fallback time (s, mean)", "fallback_time_s", 2),
    ("inference latency p50 / p95 (ms, wall)", "inference_latency", 1),
    ("mean speed (m/s)", "mean_speed", 2),
)


def _fmt(v: Any, digits: int) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return f"{v:.{digits}f}"
    return str(v)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def episode_plot(result: Any) -> bytes:
    """Speed, lateral offset and progress over time for the three drivers of one episode."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
    for m in ("expert", "constant_velocity", "model"):
        log = result.logs[m]
        h = log.handover_step
        t = (np.arange(log.steps) - h) * log.dt_s
        kw = {"color": COLORS[m], "label": METHOD_LABELS[m], "lw": 2 if m == "model" else 1.3}
        axes[0].plot(t, log.field("v") * 3.6, **kw)
        axes[1].plot(t, log.field("d"), **kw)
        axes[2].plot(t, log.field("s") - log.field("s")[h], **kw)
        for ev in result.scores[m]["collisions"]:
            axes[2].plot([ev["time_s"]], [float(np.interp(ev["time_s"], t, log.field("s") - log.field("s")[h]))], "x", color="red", ms=10)
    for ax in axes:
        ax.axvline(0, color="#888", lw=0.8, ls=":")
        ax.grid(alpha=0.3)
        ax.set_xlabel("s since handover (expert warm-up before 0)")
    axes[0].set_ylabel("speed (km/h)")
    axes[1].set_ylabel("lateral offset d (m, left +)")
    for d, style in ((EDGE_D, "-"), (-EDGE_D, "-"), (0.0, "--")):
        axes[1].axhline(d, color="#444", lw=0.8, ls=style)
    axes[1].axhline(lane_d(0), color="#aaa", lw=0.6, ls=":")
    axes[2].set_ylabel("progress along the road (m); x = collision")
    axes[0].legend(fontsize=7)
    return _png(fig)


def build_elements(metrics: dict[str, Any], results: Sequence[Any]) -> list[Any]:
    run = metrics["run"]
    overall = metrics["overall"]
    els: list[Any] = [Heading("vla_ros closed-loop rollout", 1)]
    els.append(Table(["", ""], [
        ["model", run["model"]], ["command line", run["command"]], ["code version", run["code_version"]],
        ["device", run["device"]], ["episodes", f"{run['episodes']} x {run['duration_s']:g} s after a {run['warmup_s']:g} s expert warm-up, "
                                                f"scenario {run['scenario']}, seeds {run['seeds'][0]}..{run['seeds'][-1]}"],
        ["mode", run["mode"]], ["wall time", f"{run['wall_s']:.1f} s for {run['sim_s']:.0f} s of model driving "
                                             f"({run['realtime_factor']:.2f}x real time, {run['workers']} worker(s))"],
    ]))
    els.append(Heading("Scores"))
    els.append(Para("Metric names in snake_case are those of NVIDIA AlpaSim's scorers (same definitions; docs/rollout.md). "
                    "The driving score is AlpaSim's scene score: 0 for an episode with an at-fault collision or off-road, "
                    "else min(progress / 0.8, 1)."))
    methods = [m for m in METHODS if m in overall]
    rows = []
    for label, key, digits in SCORE_ROWS:
        if key == "inference_latency":
            rows.append([label, *[f"{_fmt(overall[m].get('inference_latency_ms_p50'), 1)} / {_fmt(overall[m].get('inference_latency_ms_p95'), 1)}"
                                  if overall[m].get("inference_latency_ms_p50") is not None else "–" for m in methods]])
        else:
            rows.append([label, *[_fmt(overall[m].get(key), digits) for m in methods]])
    els.append(Table(["metric", *[METHOD_LABELS[m] for m in methods]], rows))
    erows = []
    for r in results:
        sm, se, sc = (r.scores[m] for m in ("model", "expert", "constant_velocity"))
        coll = "; ".join(f"{c['time_s']:.1f} s {c['kind']} with {c['with']}" for c in sm["collisions"]) or "none"
        erows.append([r.spec.name, f"{sm['driving_score']:.2f}", f"{100 * sm['progress']:.0f}%", coll, _fmt(sm["offroad"], 0),
                      f"{sm['lane_departure_time_s']:.1f}", f"{sm['fallback_time_s']:.1f}", sm["terminated"] or "–",
                      f"{sc['driving_score']:.2f}", f"{se['driving_score']:.2f}"])
    els.append(Heading("Episodes"))
    els.append(Table(["episode", "model score", "progress", "collisions (model)", "offroad", "lane dep. s", "fallback s", "ended early",
                      "CV score", "expert score"], erows))
    for r in results:
        sm = r.scores["model"]
        els.append(Heading(f"{r.spec.name} ({r.spec.scenario})", 3))
        els.append(Figure(f"{r.spec.name}.png", episode_plot(r), "Speed, lateral offset (lane lines drawn) and progress of the three drivers."))
        anim = sm["files"].get("animation")
        if anim:
            els.append(Para(_VIDEO.format(anim)))
        if sm["files"].get("mcap"):
            els.append(Para(f"Foxglove: {sm['files']['mcap']} (odometry, /tf, front camera, /vla/trajectory as published, the expert's path)."))
    return els


def write_report(out: Path, metrics: dict[str, Any], results: Sequence[Any]) -> Path:
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    for old in plots_dir.glob("*.png"):
        old.unlink()
    els = build_elements(metrics, results)
    for el in els:
        if isinstance(el, Figure):
            (plots_dir / el.name).write_bytes(el.png)
    md = render_markdown(els, "plots")
    page = render_html(els)
    for el in els:
        if isinstance(el, Para) and el.text.startswith("@@video:"):
            src = el.text[len("@@video:"):-2]
            kind = "video/mp4" if src.endswith(".mp4") else "image/webp"
            tag = (f"<video controls loop muted width='896' src='{html.escape(src)}' type='{kind}'></video>" if kind == "video/mp4"
                   else f"<img alt='animation' src='{html.escape(src)}'>")
            page = page.replace(f"<p>{html.escape(el.text)}</p>", f"<figure>{tag}<figcaption>{html.escape(src)}: bird's-eye view "
                                f"(expert's path green, followed path blue, orange in fallback) beside the front camera</figcaption></figure>")
            md = md.replace(el.text, f"[animation]({src})")
    (out / "report.md").write_text(md, encoding="utf-8")
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
