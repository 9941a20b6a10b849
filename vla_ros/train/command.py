"""`vla-ros train`: train a kv_expert driving model on recorded bags (see vla_ros/train/)."""
from __future__ import annotations

import argparse
import glob
import json
import shlex
import sys
from pathlib import Path

HELP = "train a driving model on recorded sim bags (flow matching + reasoning)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bags", required=True, action="extend", nargs="+", metavar="GLOB",
                   help="training bags: paths or quoted globs, several after one flag or the flag repeated")
    p.add_argument("--out", required=True, help="checkpoint directory to write, e.g. models/drive-tiny")
    p.add_argument("--val-bags", action="extend", nargs="+", default=[], metavar="GLOB", help="held-out bags for validation losses (as --bags)")
    p.add_argument("--config", default=None, help="YAML deployment config: cameras, frames, ego (default: built-in = config/drive.yaml)")
    p.add_argument("--model-config", default=None, help="JSON with (partial) config.json overrides of the drive-tiny architecture")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps (default 2000)")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN",
                   help="fit the training into MIN minutes: after the first 50 steps (inside the warm-up, which does not "
                        "depend on the step count) lower --steps to what the measured step time allows; the step count "
                        "used is logged and recorded, and --steps with it reproduces the run exactly")
    p.add_argument("--batch-size", type=int, default=16, help="examples per step (default 16)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialization, batches and noise (default 0)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--lm-weight", type=float, default=0.5, help="weight of the reasoning LM loss (default 0.5)")
    p.add_argument("--balance", type=float, default=0.0, metavar="B",
                   help="draw examples with weight count(maneuver)^-B so rare maneuvers (follow, stop) are learned "
                        "(0 = uniform, the default; 1 = the same total weight for every maneuver)")
    p.add_argument("--save-every", type=int, default=200, help="steps between training checkpoints (default 200)")
    p.add_argument("--work-dir", default=None, help="training state for --resume (default <out>.train)")
    p.add_argument("--cache-dir", default=None, help="cache of extracted examples (default <work-dir>/cache)")
    p.add_argument("--workers", type=int, default=2, help="processes extracting bags into the cache (default 2)")
    p.add_argument("--resume", action="store_true", help="continue from the last training checkpoint in --work-dir")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar (the default when stderr is not a terminal)")


def expand(patterns: list[str]) -> list[str]:
    """Globs -> sorted, de-duplicated paths; a pattern matching nothing is an error."""
    out: list[str] = []
    for pat in patterns:
        hits = sorted(glob.glob(pat)) or ([pat] if Path(pat).exists() else [])
        if not hits:
            raise FileNotFoundError(f"--bags/--val-bags {pat!r} matches no bag")
        out += [h for h in hits if h not in out]
    return out


def run(args: argparse.Namespace) -> int:
    from vla_ros.config import ConfigError, load_config
    from vla_ros.train.dataset import EmptyTrainingSetError
    from vla_ros.train.trainer import Trainer, TrainOptions

    try:
        if args.time_budget is not None and args.time_budget <= 0:
            raise ValueError(f"--time-budget must be positive minutes, got {args.time_budget}")
        bags, val = expand(args.bags), expand(args.val_bags)
        sensing = load_config(args.config)
        overrides = json.loads(Path(args.model_config).read_text(encoding="utf-8")) if args.model_config else {}
    except (FileNotFoundError, ConfigError, ValueError) as exc:
        print(f"vla-ros train: error: {exc}", file=sys.stderr)
        return 2
    opts = TrainOptions(bags=bags, out=args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                        device=args.device, lm_weight=args.lm_weight, val_bags=val, save_every=args.save_every,
                        work_dir=args.work_dir or "", cache_dir=args.cache_dir or "", resume=args.resume,
                        model_overrides=overrides, command="vla-ros train " + shlex.join(sys.argv[2:]),
                        progress=not args.no_progress and sys.stderr.isatty(), workers=args.workers, balance=args.balance,
                        time_budget_s=60.0 * args.time_budget if args.time_budget else 0.0)
    try:
        trainer = Trainer(opts, sensing)
    except EmptyTrainingSetError as exc:
        print(f"vla-ros train: error: {exc}", file=sys.stderr)
        return 1
    trainer.run()
    return 0
