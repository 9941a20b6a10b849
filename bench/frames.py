#!/usr/bin/env python3
"""Sensing-pipeline benchmark: CPU time per tick of FrameStack assembly against a naive baseline
measured in the same run.

Workload (issue 2): 4 cameras of 1920x1080 JPEG (busy texture, ~640 KB at quality 90) at 30 Hz,
ticks at 10 Hz, 4 frames per camera (t0-0.3 .. t0), 320x576 model input.
- pipeline: vla_ros.sensors.SensingPipeline (lazy decode, reduced-scale JPEG decode, decoded
  frames cached by (camera, stamp)), including message ingest.
- baseline: for the same slots, decode all V x F frames at full size every tick, then resize.
Also the wall time of `assemble` alone (what lies on the input-to-output path), with the new
frames decoded in one thread and side by side (`sensing.decode_threads`, default one per camera
up to the cores).

Usage: .venv/bin/python bench/frames.py [--seconds 4] [--json]
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vla_ros.config import Config, load_config  # noqa: E402
from vla_ros.ros import messages  # noqa: E402
from vla_ros.sensors.frame_stack import FrameStack  # noqa: E402
from vla_ros.sensors.geometry import yaw_to_quat  # noqa: E402
from vla_ros.sensors.pipeline import SensingPipeline  # noqa: E402

SRC_H, SRC_W = 1080, 1920
CAMERA_HZ, TICK_HZ, ODOM_HZ = 30, 10, 50


def busy_image(seed: int) -> np.ndarray:
    """Gradients plus sensor-like noise: JPEG of about 640 KB at quality 90 (like a real frame)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SRC_H, 0:SRC_W].astype(np.float32)
    base = np.stack([(x * 0.13 + y * 0.05 + seed * 17) % 255, (x * 0.02 + y * 0.21) % 255, ((x - y) * 0.07) % 255], -1)
    return np.clip(base + rng.normal(0, 10, (SRC_H, SRC_W, 3)), 0, 255).astype(np.uint8)


def naive_tick(stack: FrameStack, payloads: dict[tuple[int, int], bytes], size_hw: tuple[int, int]) -> None:
    h, w = size_hw
    for v in range(stack.num_views):
        for f in range(stack.num_frames):
            img = Image.open(io.BytesIO(payloads[(v, int(stack.stamps_ns[v, f]))])).convert("RGB")
            np.asarray(img.resize((w, h), Image.Resampling.BILINEAR))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds of simulated input (default 4)")
    ap.add_argument("--distinct", type=int, default=6, help="distinct JPEGs per camera, cycled (default 6)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    config = load_config(None)
    size_hw = (config.image.height, config.image.width)
    print(f"encoding {4 * args.distinct} distinct {SRC_W}x{SRC_H} JPEGs ...", file=sys.stderr)
    jpegs = [[messages.encode_jpeg(busy_image(v * 100 + i), 90) for i in range(args.distinct)] for v in range(4)]
    mean_kb = np.mean([len(j) for row in jpegs for j in row]) / 1e3

    start = 10**12
    events = []  # (stamp, topic, msg, camera, payload)
    for k in range(int(args.seconds * ODOM_HZ) + 1):
        t = start + round(k * 1e9 / ODOM_HZ)
        events.append((t, config.ego.odometry_topic, messages.odometry(t, [10.0 * k / ODOM_HZ, 0, 0], yaw_to_quat(0.0)), None, None))
    payloads: dict[tuple[int, int], bytes] = {}
    for v, cam in enumerate(config.cameras):
        for k in range(int(args.seconds * CAMERA_HZ) + 1):
            t = start + round(k * 1e9 / CAMERA_HZ) + v * 1_000_000
            data = jpegs[v][k % args.distinct]
            payloads[(v, t)] = data
            events.append((t, cam.topic, messages.compressed_image(t, cam.name, data), v, data))
    events.sort(key=lambda e: e[0])

    pipeline = SensingPipeline(config, decode_threads=1)  # CPU per tick: the work itself, one thread
    pipe_ms: list[float] = []
    base_ms: list[float] = []
    i = 0
    n_ticks = int(args.seconds * TICK_HZ)
    for tick in range(1, n_ticks + 1):
        now = start + round(tick * 1e9 / TICK_HZ)
        c0 = time.process_time()
        while i < len(events) and events[i][0] <= now:
            pipeline.on_message(events[i][1], events[i][2])
            i += 1
        stack = pipeline.assemble(now)
        c1 = time.process_time()
        if isinstance(stack, FrameStack):
            pipe_ms.append((c1 - c0) * 1e3)
            naive_tick(stack, payloads, size_hw)
            base_ms.append((time.process_time() - c1) * 1e3)
    # The first stack decodes all 16 frames; steady state is what a running node pays.
    steady_pipe, steady_base = pipe_ms[1:], base_ms[1:]
    # Wall time of assembling (the part on the input-to-output path): the new frames decoded in
    # one thread, and side by side in the node's default decode threads.
    walls = {1: assembly_wall_ms(config, events, n_ticks, start, 1)}
    auto = SensingPipeline(config).decode_threads
    if auto > 1:
        walls[auto] = assembly_wall_ms(config, events, n_ticks, start, auto)
    result = {
        "workload": f"4 cameras {SRC_W}x{SRC_H} JPEG q90 (~{mean_kb:.0f} KB) at {CAMERA_HZ} Hz, ticks at {TICK_HZ} Hz, 4 frames, {size_hw[1]}x{size_hw[0]} input",
        "ticks": len(steady_pipe),
        "pipeline_cpu_ms_per_tick": float(np.mean(steady_pipe)),
        "pipeline_cpu_ms_p95": float(np.percentile(steady_pipe, 95)),
        "baseline_cpu_ms_per_tick": float(np.mean(steady_base)),
        "speedup": float(np.mean(steady_base) / np.mean(steady_pipe)),
        "target_speedup": 5.0,
        "first_tick_pipeline_cpu_ms": pipe_ms[0],
        "assembly_wall_ms_p50_by_decode_threads": {str(k): float(np.percentile(v, 50)) for k, v in walls.items()},
    }
    result["meets_target"] = result["speedup"] >= result["target_speedup"]
    if args.json:
        print(json.dumps(result))
    else:
        print(result["workload"])
        print(f"  pipeline : {result['pipeline_cpu_ms_per_tick']:7.1f} ms CPU per tick (p95 {result['pipeline_cpu_ms_p95']:.1f}; first tick {result['first_tick_pipeline_cpu_ms']:.1f})")
        print(f"  baseline : {result['baseline_cpu_ms_per_tick']:7.1f} ms CPU per tick (decode 16 frames at full size, then resize)")
        print(f"  speedup  : {result['speedup']:.1f}x (target >= 5x) -> {'OK' if result['meets_target'] else 'BELOW TARGET'}")
        print("  assembly wall time p50, by decode threads: "
              + ", ".join(f"{k}: {v:.1f} ms" for k, v in result["assembly_wall_ms_p50_by_decode_threads"].items()))
    return 0 if result["meets_target"] else 1


def assembly_wall_ms(config: Config, events: list, n_ticks: int, start: int, threads: int) -> list[float]:
    """Wall ms of each steady-state `assemble` (messages fed between ticks, not timed)."""
    pipeline = SensingPipeline(config, decode_threads=threads)
    out: list[float] = []
    i = 0
    for tick in range(1, n_ticks + 1):
        now = start + round(tick * 1e9 / TICK_HZ)
        while i < len(events) and events[i][0] <= now:
            pipeline.on_message(events[i][1], events[i][2])
            i += 1
        t0 = time.perf_counter()
        stack = pipeline.assemble(now)
        if isinstance(stack, FrameStack):
            out.append((time.perf_counter() - t0) * 1e3)
    pipeline.close()
    return out[1:]


if __name__ == "__main__":
    sys.exit(main())
