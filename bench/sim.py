"""Benchmark `vla-ros sim record`: real-time factor at the default resolution (and optionally
1080x1920), with a per-stage breakdown, against a named baseline measured in the same run:
writing a textured test-pattern bag of the same size (JPEG encoding + bag writing, no world,
no rendering).

    .venv/bin/python bench/sim.py                 # 30 s of sim time at 320x576, 10 Hz
    .venv/bin/python bench/sim.py --duration 60 --hd --workers 2

Wall-clock figures depend on what else the machine runs; CPU seconds are printed next to them.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vla_ros.config import Config  # noqa: E402
from vla_ros.ros import messages  # noqa: E402
from vla_ros.replay.pattern_bag import PatternBagSpec, write_pattern_bag  # noqa: E402
from vla_ros.sim.camera import RIG  # noqa: E402
from vla_ros.sim.record import RecordSpec, camera_times, record, world_for  # noqa: E402
from vla_ros.sim.render import CameraRenderer  # noqa: E402
from vla_ros.sim.scene import build_scene  # noqa: E402


def timed(fn) -> tuple[float, float, object]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def breakdown(spec: RecordSpec, frames: int = 40) -> dict[str, float]:
    """Milliseconds per camera frame (all four cameras) by stage, CPU time."""
    tl_wall, tl_cpu, timeline = timed(lambda: world_for(spec))
    renderers = [CameraRenderer(RIG[c.name], spec.width, spec.height) for c in Config().cameras]
    times = camera_times(spec)[:frames]
    c0 = time.process_time()
    scenes = [build_scene(timeline, t) for t in times]
    c1 = time.process_time()
    images = [[r.render(s) for r in renderers] for s in scenes]
    c2 = time.process_time()
    for imgs in images:
        for img in imgs:
            messages.encode_jpeg(img, spec.jpeg_quality)
    c3 = time.process_time()
    n = len(times)
    return {
        "simulate (whole drive, s)": tl_cpu,
        "scene ms/frame": (c1 - c0) / n * 1e3,
        "render ms/frame (4 cams)": (c2 - c1) / n * 1e3,
        "jpeg ms/frame (4 cams)": (c3 - c2) / n * 1e3,
    }


def run_record(tmp: Path, spec: RecordSpec) -> tuple[float, float]:
    out = tmp / f"sim_{spec.width}x{spec.height}_{spec.workers}"
    wall, cpu, _ = timed(lambda: record(out, Config(), spec, overwrite=True))
    shutil.rmtree(out, ignore_errors=True)
    return wall, cpu


def run_baseline(tmp: Path, spec: RecordSpec) -> tuple[float, float]:
    out = tmp / "pattern"
    pspec = PatternBagSpec(duration_s=spec.duration_s, camera_hz=spec.camera_hz, height=spec.height, width=spec.width, textured=True)
    wall, cpu, _ = timed(lambda: write_pattern_bag(out, Config(), pspec, overwrite=True))
    shutil.rmtree(out, ignore_errors=True)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=30.0, help="sim seconds to record (default 30)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="render threads (default 1)")
    ap.add_argument("--hd", action="store_true", help="also record 5 s at 1080x1920")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (1 min) at start")
    spec = RecordSpec(seed=args.seed, duration_s=args.duration, workers=args.workers)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for k, v in breakdown(spec).items():
            print(f"  {k:28s} {v:8.2f}")
        base_wall, base_cpu = run_baseline(tmp, spec)
        wall, cpu = run_record(tmp, spec)
        print(f"\nsim record {spec.height}x{spec.width}, 4 cameras at {spec.camera_hz:g} Hz, {args.duration:g} s, mix, workers={args.workers}:")
        print(f"  wall {wall:6.2f} s -> {args.duration / wall:5.2f}x real time   (CPU {cpu:6.2f} s -> {args.duration / cpu:5.2f}x)")
        print(f"  baseline (pattern bag, same size, JPEG + bag writing only): wall {base_wall:6.2f} s -> {args.duration / base_wall:5.2f}x real time")
        print(f"  sim / baseline time: {wall / base_wall:.2f}x")
        if args.hd:
            hd = RecordSpec(seed=args.seed, duration_s=5.0, width=1920, height=1080, workers=args.workers)
            wall, cpu = run_record(tmp, hd)
            print(f"sim record 1080x1920, 5 s: wall {wall:6.2f} s -> {5.0 / wall:5.2f}x real time (CPU {cpu:6.2f} s)")
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
