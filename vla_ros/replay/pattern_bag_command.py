"""`vla-ros pattern-bag`: write a test-pattern bag for a config's topics."""
from __future__ import annotations

import argparse

HELP = "write a test-pattern rosbag2 (frame identity encoded in pixels) for a config's topics"
DESCRIPTION = """\
Write a rosbag2 with one image topic per configured camera and odometry on the configured
topic. Each image encodes its camera index and frame number in its pixels; the ego drives an
arc at constant speed. Use it to check a deployment's topics, time alignment and contact sheets
before real data is at hand: `vla-ros stacks` on it must show frame numbers rising along rows.

With --arm (needs a config with an arm section, e.g. config/arm.yaml): a robot arm's bag instead.
Its joints follow known sinusoids within the configured limits; it holds sensor_msgs/JointState
(--joint-hz), one image topic per camera drawn from the joint positions, the instruction on
std_msgs/String (latched), and the commands sent to joint_trajectory_controller
(trajectory_msgs/JointTrajectory at --command-hz), which `vla-ros eval` compares a policy's
chunks with (docs/arm.md).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output bag directory")
    p.add_argument("--config", default=None, help="YAML config (default: built-in defaults, same as config/drive.yaml)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of data (default 10)")
    p.add_argument("--camera-hz", type=float, default=None, help="camera rate (default 10; 30 with --arm)")
    p.add_argument("--odom-hz", type=float, default=50.0, help="odometry rate (default 50)")
    p.add_argument("--width", type=int, default=None, help="image width (default 576; with --arm the config's image.width)")
    p.add_argument("--height", type=int, default=None, help="image height (default 320; with --arm the config's image.height)")
    p.add_argument("--speed", type=float, default=10.0, help="ego speed in m/s (default 10)")
    p.add_argument("--yaw-rate", type=float, default=0.0, help="ego yaw rate in rad/s (default 0: straight)")
    p.add_argument("--textured", action="store_true", help="add noise so JPEG sizes resemble real images")
    p.add_argument("--format", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite an existing output bag")
    arm = p.add_argument_group("robot arm (--arm)")
    arm.add_argument("--arm", action="store_true", help="write a robot arm's bag (joint states, cameras, instruction, commands)")
    arm.add_argument("--joint-hz", type=float, default=100.0, help="joint state rate (default 100)")
    arm.add_argument("--command-hz", type=float, default=None, help="rate of the recorded commands (default: the config's control rate, 50)")
    arm.add_argument("--instruction", default=None,
                     help="the instruction sent at the start (default: the config's arm.instruction, else 'follow the pattern with the arm')")
    arm.add_argument("--instruction-change", nargs=2, action="append", default=[], metavar=("SECONDS", "TEXT"),
                     help="send another instruction SECONDS after the start (repeatable)")
    arm.add_argument("--amplitude", type=float, default=0.6, help="joint motion amplitude in rad (default 0.6, at most 90%% of a joint's half range)")
    arm.add_argument("--period", type=float, default=2.0, help="period of the first joint's motion in s; joint j's is (1 + 0.25 j) times it (default 2)")
    arm.add_argument("--tracking-lag", type=float, default=0.03, help="how far the joint states trail the commands, s (default 0.03)")
    arm.add_argument("--bad-joint-states", type=int, default=0, metavar="N",
                     help="make every Nth joint state bad, alternately a NaN position and a missing joint (default 0: none)")


def run(args: argparse.Namespace) -> int:
    from vla_ros.command_error import CommandError
    from vla_ros.config import load_config
    from vla_ros.replay.pattern_bag import ArcMotion, PatternBagSpec, write_pattern_bag

    if args.duration <= 0:
        raise CommandError(f"--duration must be > 0, got {args.duration}")
    if args.arm:
        return _run_arm(args)
    args.camera_hz = 10.0 if args.camera_hz is None else args.camera_hz
    width, height = args.width or 576, args.height or 320
    if args.camera_hz <= 0 or args.odom_hz <= 0:
        raise CommandError("--camera-hz and --odom-hz must be > 0")
    if width < 16 or height < 16:
        raise CommandError(f"--width/--height must be >= 16, got {width}x{height}")
    if args.duration * args.camera_hz >= 2**16:
        raise CommandError("too many frames for the 16-bit frame number pattern; shorten --duration")
    config = load_config(args.config)
    spec = PatternBagSpec(
        duration_s=args.duration,
        camera_hz=args.camera_hz,
        odom_hz=args.odom_hz,
        height=height,
        width=width,
        motion=ArcMotion(args.speed, args.yaw_rate),
        textured=args.textured,
        seed=args.seed,
    )
    counts = write_pattern_bag(args.out, config, spec, fmt=args.format, overwrite=args.force, progress=True)
    _print_counts(args.out, counts)
    return 0


def _print_counts(out: str, counts: dict[str, int]) -> None:
    print(f"wrote {sum(counts.values())} messages on {len(counts)} topics to {out}")
    for topic, n in sorted(counts.items()):
        print(f"  {topic}: {n}")


def _run_arm(args: argparse.Namespace) -> int:
    from vla_ros.command_error import CommandError
    from vla_ros.config import load_config
    from vla_ros.replay.arm_pattern_bag import ArmBagSpec, write_arm_bag

    if args.config is None:
        raise CommandError("--arm needs a config with an arm section (joint names, topics, limits), e.g. --config config/arm.yaml")
    config = load_config(args.config)
    if not config.arm.joint_names:
        raise CommandError(f"config '{args.config}' names no joints (arm.joint_names); see config/arm.yaml")
    if not config.arm.joint_trajectory_topic:
        raise CommandError(f"config '{args.config}' has no arm.joint_trajectory_topic to record the commands on")
    camera_hz = 30.0 if args.camera_hz is None else args.camera_hz
    command_hz = config.control.hz if args.command_hz is None else args.command_hz
    width, height = args.width or config.image.width, args.height or config.image.height
    for flag, value in (("--camera-hz", camera_hz), ("--joint-hz", args.joint_hz), ("--command-hz", command_hz),
                        ("--period", args.period)):
        if not value > 0:
            raise CommandError(f"{flag} must be > 0, got {value}")
    if width < 16 or height < 16:
        raise CommandError(f"--width/--height must be >= 16, got {width}x{height}")
    if args.amplitude < 0 or args.tracking_lag < 0 or args.bad_joint_states < 0:
        raise CommandError("--amplitude, --tracking-lag and --bad-joint-states must be >= 0")
    changes = []
    for at, text in args.instruction_change:
        try:
            changes.append((float(at), text))
        except ValueError:
            raise CommandError(f"--instruction-change takes SECONDS TEXT, got {at!r} as SECONDS") from None
    instruction = args.instruction if args.instruction is not None else config.arm.instruction or None
    spec = ArmBagSpec(
        duration_s=args.duration, camera_hz=camera_hz, joint_hz=args.joint_hz, command_hz=command_hz,
        tracking_lag_s=args.tracking_lag, height=height, width=width, amplitude=args.amplitude, base_period_s=args.period,
        instruction_changes=tuple(changes), bad_state_every=args.bad_joint_states,
        **({"instruction": instruction} if instruction is not None else {}))
    counts = write_arm_bag(args.out, config, spec, fmt=args.format, overwrite=args.force, progress=True)
    _print_counts(args.out, counts)
    return 0
