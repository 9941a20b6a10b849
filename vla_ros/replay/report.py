"""report.md (figures as PNG files in plots/ beside it) and report.html (one self-contained file,
the same figures embedded as base64), both rendered from one list of report elements."""
from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_ros.replay import plots
from vla_ros.replay.evaluator import MODEL, BagEvaluation, TickRecord
from vla_ros.replay.metrics import HORIZONS_S, MISS_THRESHOLD_M
from vla_ros.replay.summary import METHOD_LABELS, METHODS

GALLERY_WORST = 4
GALLERY_TYPICAL = 3


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True)
class Figure:
    name: str  # file name under plots/
    png: bytes
    caption: str


@dataclass(frozen=True)
class Pre:
    title: str
    text: str


Element = Heading | Para | Table | Figure | Pre


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def gallery(evals: Sequence[BagEvaluation], worst: int = GALLERY_WORST, typical: int = GALLERY_TYPICAL) -> list[tuple[str, TickRecord]]:
    """(label, record): the worst ticks by model ADE, then those closest to the median ADE."""
    records = [r for e in evals for r in e.records]
    if not records:
        return []
    ade = np.array([r.ade for r in records])
    order = np.argsort(-ade, kind="stable")
    chosen = [int(i) for i in order[:worst]]
    median = float(np.median(ade))
    with_image = [i for i in np.argsort(np.abs(ade - median), kind="stable") if records[i].front_jpeg is not None and i not in chosen]
    picks = [("worst", records[i]) for i in chosen]
    picks += [("typical", records[int(i)]) for i in with_image[:typical]]
    return picks


def run_rows(run: dict[str, Any], inference_detail: str) -> list[list[str]]:
    """The report's first table: what was run, where, with which settings."""
    return [
        ["model", run["model"]],
        ["model name / parameters", f"{run.get('model_name') or '–'} / {_fmt(run.get('model_parameters'))}"],
        ["config", run["config"]],
        ["code version", run["code_version"]],
        ["device", run["device"]],
        ["command line", run["command"]],
        ["inference", f"steps {run['steps']}, samples {run['samples']}, seed {run['seed']}, {inference_detail}, "
                      f"rate {run['rate_hz']} Hz, ablation {', '.join(run['ablate']) or 'none'}, limit {run['limit'] or 'none'}"],
    ]


def build_elements(metrics: dict[str, Any], evals: Sequence[BagEvaluation]) -> list[Element]:
    run = metrics["run"]
    overall = metrics["overall"]
    dt = metrics["definitions"].get("dt_s") or 0.1
    els: list[Element] = [Heading("vla_ros open-loop evaluation", 1)]
    els.append(Table(["", ""], [
        *run_rows(run, f"reasoning {run['reasoning']}"),
        ["bags", ", ".join(metrics["bags"])],
    ]))
    timing = overall.get("timing", {})
    els.append(Para(
        f"{overall['ticks_evaluated']} of {overall['ticks_total']} ticks evaluated "
        f"({overall['ticks_skipped_total']} skipped); {_fmt(timing.get('ticks_per_s'), 1)} ticks/s, "
        f"{_fmt(timing.get('realtime_factor'), 2)}x real time. Errors are planar (x, y) in the ego frame at t0, "
        f"in metres; a miss is a final error above {MISS_THRESHOLD_M:g} m."))

    els.append(Heading("Summary: model vs baselines"))
    hz = [h for h in HORIZONS_S if f"fde_{h:g}s" in overall[MODEL]]
    header = ["method", "ADE", "FDE", *[f"FDE@{h:g}s" for h in hz], "lat. ADE", "lon. ADE", "miss rate"]
    if "min_ade" in overall[MODEL]:
        header += [f"minADE@{overall[MODEL]['samples']}", f"minFDE@{overall[MODEL]['samples']}"]
    rows = []
    for m in METHODS:
        b = overall[m]
        row = [METHOD_LABELS[m], _fmt(b.get("ade")), _fmt(b.get("fde")), *[_fmt(b.get(f"fde_{h:g}s")) for h in hz],
               _fmt(b.get("lateral_ade")), _fmt(b.get("longitudinal_ade")), _fmt(b.get("miss_rate"))]
        if "min_ade" in overall[MODEL]:
            row += [_fmt(b.get("min_ade")), _fmt(b.get("min_fde"))]
        rows.append(row)
    els.append(Table(header, rows))
    if "reasoning" in overall:
        r = overall["reasoning"]
        parts = ", ".join(f"{m} {e['agree']}/{e['ticks']}" for m, e in r["by_maneuver"].items())
        els.append(Para(
            f"Reasoning names the recorded maneuver on {r['agree']} of {r['ticks']} ticks "
            f"({100 * r['maneuver_agreement']:.1f}%; by label: {parts}; {r['unparsed']} sentences name none)."))

    els.append(Heading("Bags"))
    brows = []
    for name, b in metrics["bags"].items():
        notes = ", ".join(f"{k} x{v}" for k, v in b["ticks_skipped"].items()) or "none"
        if b.get("error"):
            notes += f"; error: {b['error']}"
        if b.get("missing_topics"):
            notes += f"; missing topics: {', '.join(b['missing_topics'])}"
        brows.append([name, b["ticks_evaluated"], b["ticks_total"], _fmt(b[MODEL].get("ade")), _fmt(b["constant_velocity"].get("ade")),
                      _fmt(b["constant_velocity_yaw_rate"].get("ade")), notes])
    els.append(Table(["bag", "evaluated", "ticks", "model ADE", "CV ADE", "CV+yaw ADE", "skipped by reason"], brows))

    by_step = {m: overall[m].get("displacement_by_step_m", []) for m in METHODS}
    if any(by_step.values()):
        els.append(Heading("Error vs horizon"))
        els.append(Figure("error_vs_horizon.png", plots.error_vs_horizon(by_step, dt), "Mean displacement error at each waypoint; dots at 1, 2, 3, 5 s."))

    lat = overall["latency_ms"]
    if lat:
        els.append(Heading("Latency"))
        els.append(Table(["stage", "p50 ms", "p95 ms", "p99 ms", "max ms", "mean ms"],
                         [[s, _fmt(v["p50"], 1), _fmt(v["p95"], 1), _fmt(v["p99"], 1), _fmt(v["max"], 1), _fmt(v["mean"], 1)] for s, v in lat.items()]))
        samples = {s: [r.timings_ms[s] for e in evals for r in e.records if s in r.timings_ms] for s in lat}
        els.append(Figure("latency_histogram.png", plots.latency_histogram(samples), "Per-tick latency: total = stack assembly + policy."))
        els.append(Figure("latency_breakdown.png", plots.latency_breakdown(lat), "p50/p95/p99 per stage."))

    picks = gallery(evals)
    if picks:
        els.append(Heading("Gallery: worst and typical ticks"))
        cams = {e.name: (e.camera, e.front_camera) for e in evals}
        for n, (label, rec) in enumerate(picks):
            cam, cam_name = cams[rec.bag]
            errs = ", ".join(f"{METHOD_LABELS[m]} {rec.errors[m].ade:.2f} / {rec.errors[m].fde:.2f}" for m in METHODS)
            els.append(Figure(f"tick_{n:02d}_{label}.png", plots.tick_figure(rec, cam, cam_name),
                              f"{label}: {rec.bag} tick {rec.index}, t0 {rec.t0_ns / 1e9:.3f} s. ADE / FDE (m): {errs}."))
            if rec.reasoning is not None:
                els.append(Pre("reasoning", rec.reasoning))
    return els


# ------------------------------------------------------------------------------- rendering


def _md_cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def render_markdown(els: Sequence[Element], plots_dir: str) -> str:
    out: list[str] = []
    for el in els:
        if isinstance(el, Heading):
            out.append("#" * el.level + " " + el.text)
        elif isinstance(el, Para):
            out.append(el.text)
        elif isinstance(el, Table):
            out.append("| " + " | ".join(_md_cell(h) for h in el.header) + " |")
            out.append("|" + "---|" * len(el.header))
            out.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in el.rows)
        elif isinstance(el, Figure):
            out.append(f"![{_md_cell(el.caption)}]({plots_dir}/{el.name})\n\n*{el.caption}*")
        elif isinstance(el, Pre):
            text = el.text.replace("~~~", "~ ~ ~")
            out.append(f"**{el.title}:**\n\n~~~text\n{text}\n~~~")
        out.append("")
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:14px}
th{background:#f0f0f0}img{max-width:100%}figure{margin:1em 0}figcaption{font-size:13px;color:#444}
pre{background:#f6f6f6;padding:8px;white-space:pre-wrap;word-break:break-all;font-size:13px}"""


def render_html(els: Sequence[Element]) -> str:
    e = html.escape
    title = next((el.text for el in els if isinstance(el, Heading)), "report")
    out = [f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_CSS}</style></head><body>"]
    for el in els:
        if isinstance(el, Heading):
            out.append(f"<h{el.level}>{e(el.text)}</h{el.level}>")
        elif isinstance(el, Para):
            out.append(f"<p>{e(el.text)}</p>")
        elif isinstance(el, Table):
            out.append("<table><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in el.header) + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in el.rows)
            out.append("</table>")
        elif isinstance(el, Figure):
            data = base64.b64encode(el.png).decode("ascii")
            out.append(f"<figure><img alt='{e(el.name)}' src='data:image/png;base64,{data}'><figcaption>{e(el.caption)}</figcaption></figure>")
        elif isinstance(el, Pre):
            out.append(f"<p><b>{e(el.title)}:</b></p><pre>{e(el.text)}</pre>")
    out.append("</body></html>\n")
    return "\n".join(out)


def write_report(out_dir: str | Path, metrics: dict[str, Any], evals: Sequence[BagEvaluation]) -> tuple[Path, Path]:
    """Write report.md, plots/*.png and report.html into out_dir; returns (html, md) paths."""
    return write_elements(out_dir, build_elements(metrics, evals))


def write_elements(out_dir: str | Path, els: Sequence[Element]) -> tuple[Path, Path]:
    """Render report elements (the vehicle's or an arm's) into out_dir: report.md with its figures
    in plots/*.png, and the self-contained report.html; returns (html, md) paths."""
    out = Path(out_dir)
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    for old in plots_dir.glob("*.png"):  # a previous run's gallery may have had more ticks
        old.unlink()
    for el in els:
        if isinstance(el, Figure):
            (plots_dir / el.name).write_bytes(el.png)
    md = out / "report.md"
    md.write_text(render_markdown(els, "plots"), encoding="utf-8")
    page = out / "report.html"
    page.write_text(render_html(els), encoding="utf-8")
    return page, md
