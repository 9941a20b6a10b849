#!/usr/bin/env python3
"""`vla-ros rollout` throughput against real time.

Workload (issue 21): 60 s of driving with models/drive-tiny in the procedural world, scenario
mix, as 2 episodes of 30 s on 2 workers (seeds 3015 and 3016: episodes the model drives to the
end in the 20-episode evaluation; one that leaves the road ends early and is less driving),
through the real command (default
config: four 576x320 JPEG cameras rendered at 10 Hz, odometry at 50 Hz, the node core in
lockstep, 10 flow steps; plus each episode's expert and constant-velocity runs, its
rollout.mcap, animation and the report).
- baseline: real time. Real-time factor = seconds the model drove (after the 2 s warm-ups, until
  each episode ended: 60 when both run to the end) / wall seconds of the whole command (starting
  the workers and loading their models included); above 1 the rollout runs faster than the car
  would drive.
- also printed: the CPU seconds the command used (this process and its workers) per second of
  simulated driving, and the load average before and after: on a shared machine the wall time
  says as much about the other tenants as about the rollout, the CPU time does not.
With --scaling, the same with --workers 1 (speed-up = ratio of walls).

Usage: .venv/bin/python bench/rollout.py [--episodes 2] [--duration 30] [--scaling] [--json FILE] [--keep DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vla_ros.cli import main as cli_main  # noqa: E402

MODEL = str(Path(__file__).resolve().parents[1] / "models" / "drive-tiny")
SEED = 3015


def _cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(out: Path, episodes: int, duration: float, workers: int) -> dict:
    load0 = os.getloadavg()
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = cli_main(["rollout", "--world", "drive", "--model", MODEL, "--episodes", str(episodes), "--seed", str(SEED), "--scenario", "mix",
                       "--duration", str(duration), "--out", str(out), "--workers", str(workers), "--no-progress"])
    wall = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    if rc != 0:
        raise SystemExit(f"vla-ros rollout exited with {rc}")
    metrics = json.loads((out / "metrics.json").read_text())
    sim_s = sum(ep["model"]["duration_s"] for ep in metrics["episodes"].values())  # driven; an episode may end early
    return {
        "workers": workers, "episodes": episodes, "duration_s": duration, "sim_s": sim_s, "wall_s": wall,
        "realtime_factor": sim_s / wall, "cpu_s": cpu, "cpu_s_per_sim_s": cpu / sim_s,
        "loadavg_before": load0, "loadavg_after": os.getloadavg(),
        "model_driving_score": metrics["overall"]["model"]["driving_score"],
        "inference_latency_ms_p50": metrics["overall"]["model"]["inference_latency_ms_p50"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--scaling", action="store_true", help="also run with --workers 1")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--keep", default=None, help="keep the rollout outputs in this directory")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        results = [run(root / "workers2", args.episodes, args.duration, 2)]
        if args.scaling:
            results.append(run(root / "workers1", args.episodes, args.duration, 1))
    print(f"os.cpu_count() = {os.cpu_count()}")
    for r in results:
        print(f"rollout: {r['sim_s']:.0f} s of driving ({r['episodes']} x {r['duration_s']:g} s), {r['workers']} worker(s): "
              f"wall {r['wall_s']:.1f} s = {r['realtime_factor']:.2f}x real time (baseline: real time, {r['sim_s']:.0f} s); "
              f"CPU {r['cpu_s']:.1f} s = {r['cpu_s_per_sim_s']:.2f} CPU s per s of driving; "
              f"load average {r['loadavg_before'][0]:.1f} before, {r['loadavg_after'][0]:.1f} after; "
              f"inference p50 {r['inference_latency_ms_p50']:.1f} ms")
    if len(results) == 2:
        print(f"2 workers vs 1: {results[1]['wall_s'] / results[0]['wall_s']:.2f}x faster")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
