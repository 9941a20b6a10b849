#!/usr/bin/env python3
"""`vla-ros eval` throughput against real time.

Workload (issue 5): a 60 s bag of 4 cameras at 10 Hz (textured 320x576 JPEG test patterns),
odometry at 50 Hz on an arc, evaluated at 10 Hz with random:tiny through the real command
(default config: 320x576 stacks, 10 flow steps, 1 sample, no reasoning), once with 1 worker and
once with the default workers (one per core: the bag is cut into tick ranges run side by side).
- throughput: replayed ticks per second of wall time, and evaluated ticks per second;
- baseline: real time (the bag's duration): real-time factor = bag seconds / wall seconds;
  above 1 the evaluation runs faster than the car drove. The wall time includes starting the
  workers and loading their models.
With --scaling, also two such bags with --workers 1 and --workers 2 (speed-up = ratio of walls).
With --compare-with DIR (another checkout of vla_ros, e.g. `git worktree add /tmp/old <rev>`),
the whole command with default workers is timed for that code and for this checkout in turns
(--rounds times, each a fresh `python -m vla_ros.cli eval` process): this VM's speed drifts by
tens of percent over an hour, so only runs taken side by side compare two versions.

Usage: .venv/bin/python bench/eval.py [--duration 60] [--threads N] [--scaling] [--keep DIR]
                                      [--compare-with DIR [--rounds 2]]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vla_ros.cli import main as cli_main  # noqa: E402
from vla_ros.config import load_config  # noqa: E402
from vla_ros.replay.pattern_bag import ArcMotion, PatternBagSpec, write_pattern_bag  # noqa: E402


def run_eval(bags: list[Path], out: Path, workers: int | None, threads: int | None) -> tuple[float, dict]:
    argv = ["eval", *[a for b in bags for a in ("--bag", str(b))], "--model", "random:tiny", "--out", str(out), "--no-progress"]
    if workers:
        argv += ["--workers", str(workers)]
    if threads:
        argv += ["--threads", str(threads)]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = cli_main(argv)
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"vla-ros eval exited {rc}")
    return wall, json.loads((out / "metrics.json").read_text())


def command_wall(code_dir: Path, bag: Path, out: Path) -> float:
    """Wall time of `vla-ros eval` (default workers) run as a fresh process on the code in code_dir."""
    import shutil
    import subprocess

    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(code_dir)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vla_ros.cli", "eval", "--bag", str(bag), "--model", "random:tiny", "--out", str(out),
                    "--no-progress"], cwd=code_dir, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def compare(other: Path, bag: Path, root: Path, rounds: int, duration: float) -> None:
    here = Path(__file__).resolve().parents[1]
    walls: dict[str, list[float]] = {"other": [], "this": []}
    for i in range(rounds):
        for label, code in (("other", other), ("this", here)):
            walls[label].append(command_wall(code, bag, root / f"cmp_{label}"))
            print(f"  round {i + 1}: {label:5s} checkout {walls[label][-1]:.1f} s ({duration / walls[label][-1]:.2f}x real time)")
    a, b = float(np.median(walls["other"])), float(np.median(walls["this"]))
    print(f"whole command, default workers, median of {rounds}: {other} {a:.1f} s, this checkout {b:.1f} s: "
          f"{a / b:.2f}x faster ({duration / a:.2f}x -> {duration / b:.2f}x real time)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0, help="bag length in seconds (default 60)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: cores // workers)")
    ap.add_argument("--scaling", action="store_true", help="also time 2 bags with 1 and 2 workers")
    ap.add_argument("--keep", default=None, help="keep bags and outputs in this directory")
    ap.add_argument("--compare-with", default=None, metavar="DIR", help="another vla_ros checkout to time against, in turns")
    ap.add_argument("--rounds", type=int, default=2, help="turns per checkout with --compare-with (default 2)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_eval_"))
    root.mkdir(parents=True, exist_ok=True)
    config = load_config(None)
    spec = PatternBagSpec(duration_s=args.duration, textured=True, motion=ArcMotion(12.0, 0.05))
    bags = [root / "bag0", root / "bag1"] if args.scaling else [root / "bag0"]
    for i, b in enumerate(bags):
        if not b.exists():
            write_pattern_bag(b, config, PatternBagSpec(**{**spec.__dict__, "seed": i}))
    print(f"machine: {os.cpu_count()} cores; bag: {args.duration:g} s, 4 cameras 320x576 JPEG at 10 Hz, odometry 50 Hz")
    if args.compare_with:
        compare(Path(args.compare_with).resolve(), bags[0], root, args.rounds, args.duration)
        return 0

    for label, workers, out in (("1 worker", 1, "out1"), ("default workers", None, "out_default")):
        wall, m = run_eval(bags[:1], root / out, workers, args.threads)
        o = m["overall"]
        lat = o["latency_ms"]
        print(f"1 bag, {label} ({m['run']['workers']}): {o['ticks_total']} ticks ({o['ticks_evaluated']} evaluated) in "
              f"{wall:.1f} s wall (command, incl. model load and report)")
        print(f"  throughput      : {o['timing']['ticks_per_s']:.1f} ticks/s, {o['timing']['evaluated_ticks_per_s']:.1f} evaluated ticks/s")
        print(f"  real-time factor: {o['timing']['realtime_factor']:.2f}x (baseline: real time = 1.00x)")
        print("  latency p50 ms  : " + ", ".join(f"{s} {v['p50']:.1f}" for s, v in lat.items() if v["p50"] is not None))
        print(f"  device          : {m['run']['device']}")
    if args.scaling:
        w1, m1 = run_eval(bags, root / "out_w1", 1, args.threads)
        w2, m2 = run_eval(bags, root / "out_w2", 2, args.threads)
        print(f"2 bags, 1 worker : {m1['overall']['timing']['wall_s']:.1f} s evaluating ({w1:.1f} s command)")
        print(f"2 bags, 2 workers: {m2['overall']['timing']['wall_s']:.1f} s evaluating ({w2:.1f} s command); "
              f"speed-up {m1['overall']['timing']['wall_s'] / m2['overall']['timing']['wall_s']:.2f}x")
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
