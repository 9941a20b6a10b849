"""`vla-ros sim`: record a procedural drive to a rosbag2, or preview one instant of it."""
from __future__ import annotations

import argparse

HELP = "procedural driving world: record rosbag2 drives (4 cameras, odometry, labels) or preview one"
DESCRIPTION = """\
A small deterministic driving world: seeded roads (straights, curves, S-bends, speed-limit
zones with signs), traffic that follows, brakes and cuts in, an expert ego driver, and four
cameras (cross_left, front_wide, cross_right, front_tele) rendered in numpy.

  vla-ros sim record --out drive.mcap --seed 3 --duration 60 --scenario mix
  vla-ros sim preview --seed 3 --time 12 --out preview.png

The same seed and arguments give byte-identical message payloads.
"""


# Kept here (not imported from scenarios.py, which pulls in numpy) so `vla-ros --help` stays fast;
# a test checks it matches scenarios.SCENARIOS.
SCENARIO_NAMES = ("cruise", "curves", "speed_zones", "follow", "stop_and_go", "cut_in")
MIX = "mix"


def add_arguments(p: argparse.ArgumentParser) -> None:
    scen_help = f"scenarios: {', '.join(SCENARIO_NAMES)}; {MIX} draws every road section's scenario at random"
    sub = p.add_subparsers(dest="sim_command", metavar="{record,preview}", required=True)
    rec = sub.add_parser("record", help="write a rosbag2 of a simulated drive", description=scen_help)
    rec.add_argument("--out", required=True, help="output bag directory")
    rec.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    rec.add_argument("--duration", type=float, default=20.0, help="seconds of sim time (default 20)")
    rec.add_argument("--scenario", default=MIX, help=f"one of {', '.join([*SCENARIO_NAMES, MIX])} (default {MIX})")
    rec.add_argument("--width", type=int, default=576, help="image width, a multiple of 8 (default 576)")
    rec.add_argument("--height", type=int, default=320, help="image height, a multiple of 8 (default 320)")
    rec.add_argument("--camera-hz", type=float, default=10.0, help="camera rate (default 10)")
    rec.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality 1-100 (default 90)")
    rec.add_argument("--format", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage (default mcap)")
    rec.add_argument("--config", default=None, help="YAML config for topic names (default: built-in = config/drive.yaml)")
    rec.add_argument("--workers", type=int, default=1, help="threads rendering frames in parallel (default 1; output is identical)")
    rec.add_argument("--force", action="store_true", help="overwrite an existing output bag")
    rec.set_defaults(_sim=_record)

    pre = sub.add_parser("preview", help="render one instant: four cameras and a bird's-eye view, to PNG", description=scen_help)
    pre.add_argument("--out", required=True, help="output PNG file")
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--time", type=float, default=10.0, help="seconds into the drive (default 10)")
    pre.add_argument("--scenario", default=MIX)
    pre.add_argument("--width", type=int, default=576)
    pre.add_argument("--height", type=int, default=320)
    pre.add_argument("--force", action="store_true", help="overwrite an existing file")
    pre.set_defaults(_sim=_preview)


def run(args: argparse.Namespace) -> int:
    return int(args._sim(args))


def _record(args: argparse.Namespace) -> int:
    import sys
    import time
    from pathlib import Path

    from vla_ros.command_error import CommandError
    from vla_ros.config import load_config
    from vla_ros.sim.record import RecordSpec, SpecError, record

    config = load_config(args.config)
    spec = RecordSpec(
        seed=args.seed,
        duration_s=args.duration,
        scenario=args.scenario,
        width=args.width,
        height=args.height,
        camera_hz=args.camera_hz,
        jpeg_quality=args.jpeg_quality,
        workers=args.workers,
    )
    t0 = time.perf_counter()
    try:
        counts = record(args.out, config, spec, fmt=args.format, overwrite=args.force,
                        progress=sys.stderr.isatty())  # a log file gets the summary line only
    except SpecError as exc:
        raise CommandError(str(exc)) from exc
    wall = time.perf_counter() - t0
    print(f"wrote {sum(counts.values())} messages on {len(counts)} topics to {Path(args.out)} "
          f"({args.duration:g} s of sim time in {wall:.1f} s, {args.duration / wall:.1f}x real time)")
    for topic, n in sorted(counts.items()):
        print(f"  {topic}: {n}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vla_ros.command_error import CommandError
    from vla_ros.sim.preview import save_preview
    from vla_ros.sim.record import RecordSpec, SpecError

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise CommandError(f"--out must name a .png file, got '{out}'")
    if out.exists() and not args.force:
        raise CommandError(f"'{out}' exists (use --force to overwrite)")
    if not out.parent.exists():
        raise CommandError(f"directory '{out.parent}' does not exist")
    if not args.time >= 0:
        raise CommandError(f"--time must be >= 0, got {args.time}")
    spec = RecordSpec(seed=args.seed, duration_s=max(args.time, 0.1), scenario=args.scenario, width=args.width, height=args.height)
    try:
        info = save_preview(out, spec, args.time)
    except SpecError as exc:
        raise CommandError(str(exc)) from exc
    print(f"wrote {out}: t = {args.time:g} s, scenario {info['scenario']}: {info['reasoning']}")
    return 0
