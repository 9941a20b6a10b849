"""The `vla-ros` command.

Each subcommand lives in the layer that owns it, in a module that defines
`HELP: str`, `add_arguments(parser)` and `run(args) -> int`. Those modules keep their heavy
imports (torch, transformers) inside `run`, so `vla-ros --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from vla_ros import __version__
from vla_ros.command_error import CommandError

__all__ = ["COMMANDS", "CommandError", "build_parser", "main"]

# subcommand name -> module implementing it. Add a line here to add a command.
COMMANDS: dict[str, str] = {
    "stacks": "vla_ros.replay.stacks_command",
    "bench": "vla_ros.runtime.commands.bench_command",
    "pattern-bag": "vla_ros.replay.pattern_bag_command",
    "sim": "vla_ros.sim.command",
    "rollout": "vla_ros.sim.rollout.command",
    "node": "vla_ros.ros.node_command",
    "play": "vla_ros.replay.play_command",
    "eval": "vla_ros.replay.eval_command",
    "topic": "vla_ros.ros.topic_command",
    "train": "vla_ros.train.command",
    "export": "vla_ros.runtime.commands.export_command",
    "parity": "vla_ros.runtime.commands.parity_command",
}



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vla-ros",
        description=(
            "Run vision-language-action policies on ROS 2 vehicles and robots, and replay "
            "rosbag2 recordings through the same runtime for evaluation."
        ),
        epilog="Run 'vla-ros COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"vla_ros {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._module.run(args) or 0)
    except CommandError as exc:
        print(f"vla-ros {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vla-ros {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # specific library errors (ConfigError, bag errors) end up here
        from vla_ros.config import ConfigError

        if isinstance(exc, (ConfigError, FileNotFoundError, FileExistsError)):
            print(f"vla-ros {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
