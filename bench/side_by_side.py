#!/usr/bin/env python3
"""Two checkouts' runtime benchmarks side by side in one run: is a change a regression?

    git archive <old-commit> | tar -x -C /tmp/vla_old          # the other checkout, anywhere
    .venv/bin/python bench/side_by_side.py --base /tmp/vla_old --rounds 3
    .venv/bin/python bench/side_by_side.py --base /tmp/vla_old --rounds 8 --repeats 20 --denoise-only

Each round runs `bench/runtime.py --json` (torch runtime vs the transformers baseline, 1 and 6
samples) and `vla-ros bench runtime --backend onnxruntime --threads 1 --json` in the base
checkout and in this one, alternating which goes first, with the same Python environment (each
script imports the vla_ros of its own checkout). Machine load drifts over minutes, so the
interleaving, not the absolute numbers, is what makes the two comparable. Prints the medians
over rounds and this/base ratios (< 1: this checkout is faster), and the raw JSON lines with
--raw FILE.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
KEYS = ("prefill_ms", "vision_ms", "denoise_ms", "baseline_denoise_ms", "speedup", "max_abs_diff",
        "reasoning_ms_per_token", "samples_cost_ratio")
ORT_KEYS = ("prefill_ms", "denoise_ms", "torch_denoise_ms", "speedup", "max_abs_diff")
DENOISE_KEYS = ("prefill_ms", "denoise_ms", "min_denoise_ms", "checksum")


def _json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


# --denoise-only: the torch runtime's prefill and 10-step denoise of random:tiny, nothing else,
# timed `repeats` times in a fresh process of each checkout (short runs, so many alternations fit).
DENOISE_ONLY = """
import json, statistics, sys, time
sys.path.insert(0, {tree!r})
import torch
from vla_ros.runtime.policy import Policy
try:
    from vla_ros.runtime.tools.synthetic import synthetic_inputs
except ImportError:  # a base checkout from before runtime/ was grouped by concern
    from vla_ros.runtime.synthetic import synthetic_inputs
p = Policy.from_pretrained("random:tiny")
noise = torch.randn(1, 64, 2, generator=torch.Generator().manual_seed(0))
ticks = [synthetic_inputs(i, height=96, width=224) for i in range({repeats} + 2)]
ctx = p.prefill(ticks[0], reasoning_budget=0); p.denoise(ctx, noise=noise)
pf, dn = [], []
for t in ticks[1:]:
    t0 = time.perf_counter(); ctx = p.prefill(t, reasoning_budget=0); t1 = time.perf_counter()
    out = p.denoise(ctx, noise=noise); t2 = time.perf_counter()
    pf.append((t1 - t0) * 1e3); dn.append((t2 - t1) * 1e3)
print(json.dumps(dict(bench="denoise_only", model="random:tiny", samples=1, prefill_ms=statistics.median(pf),
                      denoise_ms=statistics.median(dn), min_denoise_ms=min(dn), threads=torch.get_num_threads(),
                      checksum=float(out.double().sum()))))
"""


def run_denoise_only(tree: Path, repeats: int) -> list[dict]:
    out = subprocess.run([sys.executable, "-c", DENOISE_ONLY.format(tree=str(tree), repeats=repeats)],
                         capture_output=True, text=True, cwd=tree, check=True)
    return _json_lines(out.stdout)


def run_tree(tree: Path, repeats: int) -> list[dict]:
    """The torch runtime bench, then the ONNX Runtime bench, in checkout `tree`."""
    env_py = sys.executable
    runtime = subprocess.run([env_py, str(tree / "bench" / "runtime.py"), "--json", "--repeats", str(repeats)],
                             capture_output=True, text=True, cwd=tree, check=True)
    rows = [dict(r, bench="runtime") for r in _json_lines(runtime.stdout)]
    cli = (f"import sys; sys.path.insert(0, {str(tree)!r}); from vla_ros.cli import main; "
           "sys.exit(main(sys.argv[1:]))")
    ort = subprocess.run([env_py, "-c", cli, "bench", "runtime", "--backend", "onnxruntime", "--threads", "1",
                          "--repeats", str(repeats), "--json"], capture_output=True, text=True, cwd=tree)
    if ort.returncode == 0:
        rows += [dict(r, bench="onnxruntime") for r in _json_lines(ort.stdout)]
    else:
        print(f"[{tree}] onnxruntime bench failed: {ort.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, type=Path, help="the other checkout (e.g. the previous commit)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5, help="repeats inside each bench run (medians)")
    ap.add_argument("--raw", type=Path, default=None, help="append every JSON row here, as the rounds go")
    ap.add_argument("--summarize", type=Path, default=None, help="only print the summary of a --raw file")
    ap.add_argument("--denoise-only", action="store_true",
                    help="time only the torch runtime's prefill and denoise (short runs: use more rounds)")
    args = ap.parse_args()
    if args.summarize:
        rows = [json.loads(line) for line in args.summarize.read_text().splitlines() if line.strip()]
        print(summary(rows, {"base": None, "this": None}))
        return 0
    trees = {"base": args.base.resolve(), "this": HERE}
    rows: list[dict] = []
    for r in range(args.rounds):
        order = ("base", "this") if r % 2 == 0 else ("this", "base")
        for name in order:
            print(f"round {r + 1}/{args.rounds}: {name} ({trees[name]})", file=sys.stderr, flush=True)
            run = run_denoise_only if args.denoise_only else run_tree
            new = [dict(row, tree=name, round=r) for row in run(trees[name], args.repeats)]
            rows += new
            if args.raw:  # as we go: a long run cut short still leaves its rows
                with args.raw.open("a") as f:
                    f.write("".join(json.dumps(row) + "\n" for row in new))
    print(summary(rows, trees))
    return 0


def summary(rows: list[dict], trees: dict) -> str:
    """Medians per tree and the this/base ratio of every figure both trees have."""
    lines = []
    groups = sorted({(row["bench"], row["model"], row["samples"]) for row in rows})
    lines.append(f"{'bench / model / samples / figure':58}{'base':>10}{'this':>10}{'this/base':>11}")
    for bench, model, samples in groups:
        for key in {"runtime": KEYS, "onnxruntime": ORT_KEYS, "denoise_only": DENOISE_KEYS}[bench]:
            vals = {}
            for name in trees:
                v = [row[key] for row in rows if (row["bench"], row["model"], row["samples"], row["tree"]) ==
                     (bench, model, samples, name) and key in row]
                if v:
                    vals[name] = statistics.median(v)
            if len(vals) == 2:
                ratio = vals["this"] / vals["base"] if vals["base"] else float("nan")
                label = f"{bench} / {model} / {samples} / {key}"
                lines.append(f"{label:58}{vals['base']:10.4g}{vals['this']:10.4g}{ratio:11.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
