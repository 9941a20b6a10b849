"""`vla-ros stacks`: replay a bag through the sensing pipeline and report what it assembled."""
from __future__ import annotations

import argparse

HELP = "replay a rosbag2 through the sensing pipeline; write stack statistics and contact sheets"
DESCRIPTION = """\
Replay a rosbag2 (MCAP or sqlite3) through the exact sensing pipeline the node uses, at fixed
ticks of sim time, and write DIR/stacks.json (ticks attempted/assembled/skipped by reason,
per-camera message, decode and drop counts) plus contact sheets (DIR/sheet_*.png: views as rows,
frames as columns, stamps printed). With --npz, the assembled stacks are saved as arrays:
t0 (N,), stamps (N,V,F), images (N,V,F,H,W,3) uint8, history_xyz (N,16,3), history_rot
(N,16,3,3); times in seconds (float64).
"""

NPZ_DEFAULT_LIMIT = 32


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bag", required=True, help="rosbag2 directory or .mcap/.db3 file")
    p.add_argument("--config", default=None, help="YAML config (default: built-in defaults = config/drive.yaml)")
    p.add_argument("--out", required=True, help="output directory (created if missing)")
    p.add_argument("--rate", type=float, default=10.0, help="tick rate in Hz of sim time (default 10)")
    p.add_argument("--npz", default=None, help="also save the first N assembled stacks to this .npz file")
    p.add_argument("--limit", type=int, default=None, help="stop after N assembled stacks (default: replay the whole bag)")
    p.add_argument(
        "--npz-limit",
        type=int,
        default=None,
        help=f"stacks saved to --npz (default: --limit if given, else {NPZ_DEFAULT_LIMIT}; each 320x576 stack is ~8.8 MB)",
    )
    p.add_argument("--sheets", type=int, default=4, help="number of contact sheets to write (default 4)")


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from vla_ros.command_error import CommandError
    from vla_ros.config import load_config
    from vla_ros.replay.bag_io import BagError, bag_info
    from vla_ros.replay.contact_sheet import save_contact_sheet
    from vla_ros.replay.tick_replay import count_ticks, replay_ticks
    from vla_ros.sensors.frame_stack import FrameStack
    from vla_ros.sensors.pipeline import SensingPipeline

    if args.rate <= 0:
        raise CommandError(f"--rate must be > 0, got {args.rate}")
    for flag in ("limit", "npz_limit"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise CommandError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    config = load_config(args.config)
    try:
        info = bag_info(args.bag)
    except BagError as exc:
        raise CommandError(str(exc)) from exc
    missing = [t for t in (*(c.topic for c in config.cameras), config.ego.odometry_topic) if t not in info.message_counts]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    pipeline = SensingPipeline(config)
    npz_limit = args.npz_limit or args.limit or NPZ_DEFAULT_LIMIT
    kept: list[FrameStack] = []
    sheet_pool = _EvenSample(args.sheets)
    total = count_ticks(args.bag, args.rate)
    cpu_ms: list[float] = []
    wall0 = time.perf_counter()
    with tqdm(total=total, desc=f"stacks {Path(args.bag).name}", unit="tick") as bar:
        cpu_prev = time.process_time()
        for tick in replay_ticks(args.bag, pipeline, args.rate):
            cpu_now = time.process_time()
            cpu_ms.append((cpu_now - cpu_prev) * 1e3)
            cpu_prev = cpu_now
            bar.update(1)
            stack = tick.result
            if not isinstance(stack, FrameStack):
                continue
            if args.npz and len(kept) < npz_limit:
                kept.append(stack)
            sheet_pool.offer(stack)
            if args.limit is not None and pipeline.ticks_assembled >= args.limit:
                break
    pipeline.close()  # its decoding threads
    wall_s = time.perf_counter() - wall0

    sheets = []
    for i, stack in enumerate(sheet_pool.pick()):
        sheets.append(save_contact_sheet(stack, out / f"sheet_{i:02d}_t{stack.t0:.3f}.png").name)
    if args.npz and kept:
        _save_npz(args.npz, kept)

    stats = pipeline.stats()
    report = {
        "bag": str(Path(args.bag)),
        "bag_duration_s": info.duration_s,
        "rate_hz": args.rate,
        "missing_topics": missing,
        **stats,
        "cpu_ms_per_tick": {"mean": float(np.mean(cpu_ms)) if cpu_ms else None, "p50": _pct(cpu_ms, 50), "p95": _pct(cpu_ms, 95)},
        "wall_s": wall_s,
        "contact_sheets": sheets,
        "npz": {"path": str(args.npz), "stacks": len(kept)} if args.npz else None,
        "config": config.to_dict(),
    }
    (out / "stacks.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"ticks: {stats['ticks_attempted']} attempted, {stats['ticks_assembled']} assembled, {stats['ticks_skipped']} skipped")
    for reason, n in stats["skipped_by_reason"].items():
        print(f"  skipped {n:5d} x {reason}")
    for topic in missing:
        print(f"  warning: topic {topic} is not in the bag")
    print(f"wrote {out / 'stacks.json'} and {len(sheets)} contact sheet(s)" + (f"; {len(kept)} stacks to {args.npz}" if args.npz else ""))
    if stats["ticks_assembled"] == 0:
        print("no stack could be assembled; see skipped_by_reason above")
        return 1
    return 0


class _EvenSample:
    """Keeps at most 2n of the items offered, evenly spread over the whole stream (every
    stride-th, the stride doubling when full), so n contact sheets can span the bag without
    knowing in advance how many stacks will assemble."""

    def __init__(self, n: int) -> None:
        self.n = max(n, 0)
        self.items: list = []
        self.stride = 1
        self.seen = 0

    def offer(self, item) -> None:
        if self.n and self.seen % self.stride == 0:
            self.items.append(item)
            if len(self.items) >= 2 * self.n:
                self.items = self.items[::2]
                self.stride *= 2
        self.seen += 1

    def pick(self) -> list:
        if len(self.items) <= self.n:
            return list(self.items)
        step = (len(self.items) - 1) / (self.n - 1) if self.n > 1 else 0
        return [self.items[round(i * step)] for i in range(self.n)]


def _pct(values: list[float], q: float) -> float | None:
    import numpy as np

    return float(np.percentile(values, q)) if values else None


def _save_npz(path: str, stacks: list) -> None:
    import numpy as np

    np.savez(
        path,
        t0=np.array([s.t0 for s in stacks], dtype=np.float64),
        stamps=np.stack([s.stamps for s in stacks]).astype(np.float64),
        images=np.stack([s.images for s in stacks]),
        history_xyz=np.stack([s.history_xyz for s in stacks]),
        history_rot=np.stack([s.history_rot for s in stacks]),
        camera_names=np.array(stacks[0].camera_names),
    )
