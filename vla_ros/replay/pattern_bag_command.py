"""`vla-ros pattern-bag`: write a test-pattern bag for a config's topics."""
from __future__ import annotations

import argparse

HELP = "write a test-pattern rosbag2 (frame identity encoded in pixels) for a config's topics"
DESCRIPTION = """\
Write a rosbag2 with one image topic per configured camera and odometry on the configured
topic. Each image encodes its camera index and frame number in its pixels; the ego drives an
arc at constant speed. Use it to check a deployment's topics, time alignment and contact sheets
before real data is at hand: `vla-ros stacks` on it must show frame numbers rising along rows.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output bag directory")
    p.add_argument("--config", default=None, help="YAML config (default: built-in defaults, same as config/drive.yaml)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of data (default 10)")
    p.add_argument("--camera-hz", type=float, default=10.0, help="camera rate (default 10)")
    p.add_argument("--odom-hz", type=float, default=50.0, help="odometry rate (default 50)")
    p.add_argument("--width", type=int, default=576)
    p.add_argument("--height", type=int, default=320)
    p.add_argument("--speed", type=float, default=10.0, help="ego speed in m/s (default 10)")
    p.add_argument("--yaw-rate", type=float, default=0.0, help="ego yaw rate in rad/s (default 0: straight)")
    p.add_argument("--textured", action="store_true", help="add noise so JPEG sizes resemble real images")
    p.add_argument("--format", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite an existing output bag")


def run(args: argparse.Namespace) -> int:
    from vla_ros.command_error import CommandError
    from vla_ros.config import load_config
    from vla_ros.replay.pattern_bag import ArcMotion, PatternBagSpec, write_pattern_bag

    if args.duration <= 0:
        raise CommandError(f"--duration must be > 0, got {args.duration}")
    if args.camera_hz <= 0 or args.odom_hz <= 0:
        raise CommandError("--camera-hz and --odom-hz must be > 0")
    if args.width < 16 or args.height < 16:
        raise CommandError(f"--width/--height must be >= 16, got {args.width}x{args.height}")
    if args.duration * args.camera_hz >= 2**16:
        raise CommandError("too many frames for the 16-bit frame number pattern; shorten --duration")
    config = load_config(args.config)
    spec = PatternBagSpec(
        duration_s=args.duration,
        camera_hz=args.camera_hz,
        odom_hz=args.odom_hz,
        height=args.height,
        width=args.width,
        motion=ArcMotion(args.speed, args.yaw_rate),
        textured=args.textured,
        seed=args.seed,
    )
    counts = write_pattern_bag(args.out, config, spec, fmt=args.format, overwrite=args.force, progress=True)
    total = sum(counts.values())
    print(f"wrote {total} messages on {len(counts)} topics to {args.out}")
    for topic, n in sorted(counts.items()):
        print(f"  {topic}: {n}")
    return 0
