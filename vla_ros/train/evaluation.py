"""The model card's evaluation figures, from what `vla-ros eval` and `vla-ros bench runtime` wrote.

    python -m vla_ros.train.evaluation --model models/drive-tiny --eval DIR --ablate DIR
        [--reasoning DIR] [--bench bench.json] [--command "..."]

reads DIR/metrics.json of a plain run, of a `--ablate cameras` run and of a `--reasoning` run
(the same held-out bags), scores the reasoning sentences of the latter against the bags' own
`/sim/ground_truth` labels (the maneuver named by the sentence's action phrase vs the label's
`maneuver`), writes `eval.json` into the model directory and re-renders MODEL_CARD.md.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from vla_ros.replay.bag_io import read_messages
from vla_ros.sensors.stamps import stamp_ns
from vla_ros.train.dataset import _label_at, read_labels
from vla_ros.replay.labels import maneuver_of
from vla_ros.train.model_card import write_model_card


def reasoning_agreement(predictions_bag: str | Path, source_bag: str | Path, trajectory_topic: str = "/vla/trajectory",
                        reasoning_topic: str = "/vla/reasoning") -> dict[str, Any]:
    """Per tick of the prediction bag: the maneuver its reasoning names vs the label at its t0.
    A tick's reasoning and trajectory share the tick's log time; t0 is the trajectory's stamp."""
    t0_at: dict[int, int] = {}
    texts: dict[int, str] = {}
    for m in read_messages(predictions_bag, [trajectory_topic, reasoning_topic]):
        if m.topic == trajectory_topic:
            t0_at[m.log_time_ns] = stamp_ns(m.msg)
        else:
            texts[m.log_time_ns] = m.msg.data
    labels = read_labels(source_bag)
    stamps = np.array(sorted(labels), dtype=np.int64)
    per: Counter[str] = Counter()
    hit: Counter[str] = Counter()
    said: Counter[tuple[str, str]] = Counter()  # (label, maneuver named) of the ticks that disagree
    unlabeled = 0
    for tick, text in texts.items():
        label = _label_at(labels, stamps, t0_at[tick]) if tick in t0_at else None
        if label is None:
            unlabeled += 1
            continue
        named = maneuver_of(text)
        per[label["maneuver"]] += 1
        hit[label["maneuver"]] += int(named == label["maneuver"])
        if named != label["maneuver"]:
            said[(label["maneuver"], named or "unparsed")] += 1
    total = sum(per.values())
    return {"ticks": total, "agree": sum(hit.values()), "unlabeled": unlabeled,
            "by_maneuver": {k: {"ticks": per[k], "agree": hit[k]} for k in sorted(per)},
            "confusions": {f"{k[0]} -> {k[1]}": n for k, n in said.most_common()}}


def _overall(path: Path) -> dict[str, Any]:
    return json.loads((path / "metrics.json").read_text(encoding="utf-8"))


def summarize(model_dir: Path, plain: Path, ablated: Path, reasoning: Path | None, bench: Path | None, command: str,
              other_noise: Path | None = None) -> dict[str, Any]:
    m, a = _overall(plain), _overall(ablated)
    o, oa = m["overall"], a["overall"]
    ade, fde = o["model"]["ade"], o["model"]["fde"]
    cv, cvy = o["constant_velocity"], o["constant_velocity_yaw_rate"]
    rows = [
        {"name": "ADE 6.4 s (m)", "value": f"{ade:.3f}", "target": "", "met": None},
        {"name": "ADE / constant velocity", "value": f"{ade / cv['ade']:.3f} ({cv['ade']:.3f} m)", "target": "<= 0.70", "met": ade / cv["ade"] <= 0.7},
        {"name": "ADE / CV + yaw rate", "value": f"{ade / cvy['ade']:.3f} ({cvy['ade']:.3f} m)", "target": "<= 0.85", "met": ade / cvy["ade"] <= 0.85},
        {"name": "FDE 6.4 s (m)", "value": f"{fde:.3f}", "target": "", "met": None},
        {"name": "FDE / constant velocity", "value": f"{fde / cv['fde']:.3f} ({cv['fde']:.3f} m)", "target": "<= 0.70", "met": fde / cv["fde"] <= 0.7},
        {"name": "FDE / CV + yaw rate", "value": f"{fde / cvy['fde']:.3f} ({cvy['fde']:.3f} m)", "target": "<= 0.85", "met": fde / cvy["fde"] <= 0.85},
        {"name": "lateral / longitudinal ADE (m), model vs CV + yaw rate",
         "value": f"{o['model']['lateral_ade']:.2f} / {o['model']['longitudinal_ade']:.2f} vs {cvy['lateral_ade']:.2f} / {cvy['longitudinal_ade']:.2f}",
         "target": "", "met": None},
        {"name": "ADE with grey cameras / ADE", "value": f"{oa['model']['ade'] / ade:.3f} ({oa['model']['ade']:.3f} m)",
         "target": ">= 1.20", "met": oa["model"]["ade"] / ade >= 1.2},
    ]
    out: dict[str, Any] = {"command": command, "bags": ", ".join(sorted(m["bags"])), "ticks": o["ticks_evaluated"], "rows": rows}
    if reasoning is not None:
        r = _overall(reasoning)
        agg = Counter()
        by: dict[str, Counter] = {}
        confusions: Counter[str] = Counter()
        for name, b in r["bags"].items():
            pred = Path(b["predictions_bag"])  # relative to the eval directory
            res = reasoning_agreement(pred if pred.is_absolute() else reasoning / pred, b["path"])
            agg.update({"ticks": res["ticks"], "agree": res["agree"]})
            confusions.update(res["confusions"])
            for k, v in res["by_maneuver"].items():
                by.setdefault(k, Counter()).update(v)
        share = agg["agree"] / max(1, agg["ticks"])
        rows.append({"name": "reasoning names the labelled maneuver", "value": f"{share:.1%} of {agg['ticks']} ticks",
                     "target": ">= 80%", "met": share >= 0.8})
        ro = r["overall"]
        rows.append({"name": "ADE with reasoning decoded (m)", "value": f"{ro['model']['ade']:.3f} "
                     f"({ro['model']['ade'] / ro['constant_velocity']['ade']:.3f} x CV)", "target": "", "met": None})
        out["reasoning_by_maneuver"] = {k: f"{v['agree']}/{v['ticks']}" for k, v in sorted(by.items())}
        out["reasoning_confusions"] = dict(confusions.most_common())  # "label -> named": ticks
    if other_noise is not None:  # the plain run at the other start-noise scale
        zm = _overall(other_noise)
        z, scale = zm["overall"], zm["run"]["noise_scale"]
        what = "deterministic decoding" if scale == 0 else "one sample of the learned distribution"
        zade = z["model"]["ade"]
        rows.append({"name": f"ADE with `--noise-scale {scale:g}`, {what} (m)",
                     "value": f"{zade:.3f} ({zade / z['constant_velocity']['ade']:.3f} x CV, "
                              f"{zade / z['constant_velocity_yaw_rate']['ade']:.3f} x CV+yaw)", "target": "", "met": None})
    if bench is not None:
        bj = json.loads(bench.read_text(encoding="utf-8"))
        tick = bj["prefill_ms"] + bj["denoise_ms"]
        rows.append({"name": "tick latency, prefill + 10 steps (ms, `bench runtime`)",
                     "value": f"{tick:.1f} ({bj['prefill_ms']:.1f} + {bj['denoise_ms']:.1f})", "target": "< 100", "met": tick < 100})
    lat = o.get("latency_ms", {})
    if "policy" in lat:
        rows.append({"name": "eval policy latency p50 / p95 (ms)", "value": f"{lat['policy']['p50']:.1f} / {lat['policy']['p95']:.1f}",
                     "target": "", "met": None})
    notes = ["Ratios are against the baselines `vla-ros eval` computes on the same ticks."]
    if "reasoning_by_maneuver" in out:
        notes.append("Reasoning agreement by labelled maneuver: " + ", ".join(f"{k} {v}" for k, v in out["reasoning_by_maneuver"].items()) + ".")
        if out["reasoning_confusions"]:
            notes.append("Most frequent disagreements (label -> maneuver named, ticks): "
                         + ", ".join(f"{k} {n}" for k, n in list(out["reasoning_confusions"].items())[:4]) + ".")
    out["notes"] = " ".join(notes)
    (model_dir / "eval.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    write_model_card(model_dir)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vla_ros.train.evaluation", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--eval", required=True, help="output directory of a plain `vla-ros eval` run")
    p.add_argument("--ablate", required=True, help="output directory of the `--ablate cameras` run")
    p.add_argument("--reasoning", default=None, help="output directory of the `--reasoning` run")
    p.add_argument("--bench", default=None, help="`vla-ros bench runtime --json` output")
    p.add_argument("--other-noise", default=None, help="output directory of the plain run at another --noise-scale")
    p.add_argument("--command", default="", help="the eval command line, for the card")
    a = p.parse_args(argv)
    out = summarize(Path(a.model), Path(a.eval), Path(a.ablate), Path(a.reasoning) if a.reasoning else None,
                    Path(a.bench) if a.bench else None, a.command, Path(a.other_noise) if a.other_noise else None)
    for row in out["rows"]:
        print(f"{row['name']:<55} {row['value']:<28} {row['target']:<8} {'' if row['met'] is None else 'ok' if row['met'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
