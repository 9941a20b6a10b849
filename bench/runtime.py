#!/usr/bin/env python3
"""Runtime benchmark: the Policy against the straightforward transformers path (the released
Alpamayo-R1 code's prefill + denoise loop), both measured in this run, on synthetic ticks.

    .venv/bin/python bench/runtime.py                 # CPU: random:tiny (1, 6 samples), random:alpamayo-r1-tiny
    .venv/bin/python bench/runtime.py --device cuda   # + CUDA graph vs eager, random:alpamayo-r1-10b

Targets (issue 4): CPU random:tiny 10 steps: denoise >= 1.2x the baseline loop, max abs diff
<= 1e-4, 6 samples <= 5x one sample; the same ratio and diff on random:alpamayo-r1-tiny, the
released Alpamayo-R1 structure (issue 18). CUDA: graph >= 2x eager (tiny); 10B bf16 prefill + 10
steps <= 100 ms on an H100.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vla_ros.runtime.tools.bench import format_report, run_bench  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--skip-10b", action="store_true", help="on CUDA, skip random:alpamayo-r1-10b")
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON lines as well")
    args = ap.parse_args()
    runs = [dict(model="random:tiny", samples=1), dict(model="random:tiny", samples=6),
            dict(model="random:alpamayo-r1-tiny", samples=1)]
    if args.device.startswith("cuda"):
        runs.append(dict(model="random:tiny", samples=1, dtype="float32"))
        if not args.skip_10b:
            runs.append(dict(model="random:alpamayo-r1-10b", samples=1, repeats=min(args.repeats, 5)))
    verdicts = []
    for cfg in runs:
        r = run_bench(cfg["model"], device=args.device, dtype=cfg.get("dtype"), steps=10, samples=cfg["samples"],
                      repeats=cfg.get("repeats", args.repeats))
        print(format_report(r), "\n")
        if args.json:
            print(json.dumps(r), "\n")
        tag = f"{cfg['model']} {r['dtype']} samples={cfg['samples']}"
        if cfg["samples"] == 1:
            verdicts.append((f"{tag}: denoise speedup vs baseline >= 1.2", r["speedup"], r["speedup"] >= 1.2))
        else:
            verdicts.append((f"{tag}: cost vs 1 sample <= 5", r["samples_cost_ratio"], r["samples_cost_ratio"] <= 5))
        verdicts.append((f"{tag}: max abs diff <= 1e-4", r["max_abs_diff"], r["max_abs_diff"] <= 1e-4 or r["dtype"] != "float32"))
        if "graph_speedup" in r:
            verdicts.append((f"{tag}: CUDA graph vs eager >= 2", r["graph_speedup"], r["graph_speedup"] >= 2))
        if "10b" in cfg["model"]:
            total = r["prefill_ms"] + r["denoise_ms"]
            verdicts.append((f"{tag}: prefill + 10 steps <= 100 ms", total, total <= 100))
    for name, value, ok in verdicts:
        print(f"{'PASS' if ok else 'MISS'}  {name}: {value:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
