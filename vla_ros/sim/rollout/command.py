"""`vla-ros rollout`: closed-loop evaluation of a policy in the procedural driving world."""
from __future__ import annotations

import argparse

HELP = "drive the procedural world with a policy through the node's own control path; closed-loop metrics and a report"
DESCRIPTION = """\
Closed loop: the driving world advances in sim time; at every step its odometry (50 Hz) and
its four cameras (10 Hz, rendered and JPEG-encoded) go through the node core exactly as the
node receives them (sensing pipeline, policy, watchdog, fallback, control tick), in lockstep
(sim time waits for the policy), and the ego follows the latest published nav_msgs/Path with
a vehicle controller (docs/rollout.md). With --transport dds the node runs as its own process
(vla-ros node --transport dds --use-sim-time) fed over DDS with /clock instead. Traffic reacts to the ego as it does to the expert.
Each episode (world seed S+i) is driven three times: by the model, by the world's expert (the
reference and upper bound) and by constant-velocity following (the lower bound); the expert
drives the first 2 s of each so the node has its ego history.

Writes into --out:
  metrics.json                      per episode and overall, AlpaSim-named where the quantity is the same
  report.html, report.md, plots/    score table, per-episode plots and animations
  episodes/<name>/rollout.mcap      the model episode for Foxglove (odometry, /tf, front camera, /vla/trajectory, traffic)
  episodes/<name>/animation.mp4     bird's-eye view beside the front camera (animated WebP without ffmpeg)

Same seed, model, config and --workers: the same metrics (lockstep).
Exit status: 0 done, 2 for a usage, config or model error (reported before any work).
"""
DEFAULT_SEED = 3000  # the bundled model trained on seeds 1000-1079 and was evaluated on 2001-2002


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--world", choices=("drive",), default="drive", help="the world to drive in (default: drive, the procedural road world)")
    p.add_argument("--model", default=None, help="checkpoint directory or preset such as random:tiny (default: config model.path)")
    p.add_argument("--config", default=None, help="YAML config (default: built-in defaults = config/drive.yaml)")
    p.add_argument("--episodes", type=int, default=4, help="episodes; episode i drives the world of seed S+i (default 4)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"world seed of the first episode (default {DEFAULT_SEED}: not seen in training)")
    p.add_argument("--scenario", default="mix", help="cruise | curves | speed_zones | follow | stop_and_go | cut_in | mix (default)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds the method drives per episode, after a 2 s expert warm-up (default 30)")
    p.add_argument("--out", required=True, help="output directory (created if missing; this command's files in it are replaced)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes running episodes side by side, each loading its own model (default: the CPU cores, "
                        "at most the episodes; 1 runs in this process)")
    p.add_argument("--transport", choices=("lockstep", "dds"), default="lockstep",
                   help="lockstep: the node's transport-independent core in this process, sim time waits for the policy "
                        "(default, reproducible); dds: the node as its own process (vla-ros node --transport dds --use-sim-time) "
                        "fed over DDS with /clock, sim time at most real time, one episode at a time (needs the dds extra)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it is off anyway when stderr is not a terminal)")


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    import time
    from pathlib import Path

    from vla_ros.command_error import CommandError
    from vla_ros.config import load_config
    from vla_ros.cores import available_cores
    from vla_ros.replay.eval_runner import ModelSpec, ModelSpecError, check_model, code_version, device_description, load_policy
    from vla_ros.sim.camera import RIG
    from vla_ros.sim.rollout.log import METHODS
    from vla_ros.sim.rollout.report import write_report
    from vla_ros.sim.rollout.runner import episode_specs, run_all
    from vla_ros.sim.rollout.scoring import MIN_GT_DISTANCE_M, PROGRESS_SATURATION, overall
    from vla_ros.sim.scenarios import MIX, SCENARIOS

    if args.episodes < 1:
        raise CommandError(f"--episodes must be >= 1, got {args.episodes}")
    if args.seed < 0:
        raise CommandError(f"--seed must be >= 0, got {args.seed}")
    if not (args.duration > 0 and args.duration <= 3600):
        raise CommandError(f"--duration must be in (0, 3600] seconds, got {args.duration}")
    if args.scenario != MIX and args.scenario not in SCENARIOS:
        raise CommandError(f"unknown scenario '{args.scenario}' (known: {', '.join([*SCENARIOS, MIX])})")
    if args.workers is not None and args.workers < 1:
        raise CommandError(f"--workers must be >= 1, got {args.workers}")
    config = load_config(args.config)
    unknown = [c.name for c in config.cameras if c.name not in RIG]
    if unknown:
        raise CommandError(f"the driving world renders the cameras {', '.join(RIG)}; the config names {', '.join(unknown)}")
    if not all(c.compressed for c in config.cameras):
        raise CommandError("the driving world delivers JPEG sensor_msgs/CompressedImage: camera topics must end in '/compressed'")
    inf = config.inference
    model_path = args.model or config.model.path
    device = config.model.device
    spec = ModelSpec(model_path, device, config.model.dtype, inf.backend, max(8, inf.samples), max(64, inf.max_reasoning_tokens))
    try:
        check_model(spec, config)
    except ModelSpecError as exc:
        raise CommandError(str(exc)) from exc
    workers = min(args.workers or (1 if device.startswith("cuda") else available_cores()), args.episodes)
    if args.transport == "dds":
        try:
            import cyclonedds  # noqa: F401
        except ImportError as exc:
            raise CommandError("--transport dds needs Cyclone DDS: pip install 'vla_ros[dds]'") from exc
        workers = 1  # one node process at a time: two on one DDS domain would hear each other
    # Torch threads per worker: its share of the cores, one core less when alone (a policy thread that has to wait
    # for a busy core stalls the others: on a shared 2-core VM, 2 threads took the tiny model from 0.2 s to 3 s a tick).
    threads = max(1, available_cores() // workers - (1 if workers == 1 else 0))
    policy = None
    if workers == 1 and args.transport == "lockstep":
        try:
            policy = load_policy(spec)
        except ModelSpecError as exc:
            raise CommandError(str(exc)) from exc
        import torch

        torch.set_num_threads(threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    specs = episode_specs(args.episodes, args.seed, args.scenario, args.duration)
    print(f"rollout: {args.episodes} episode(s) x {args.duration:g} s, scenario {args.scenario}, seeds {args.seed}..{args.seed + args.episodes - 1}, "
          f"{model_path}, {workers} worker(s) -> {out}", file=sys.stderr)

    def done(r) -> None:
        m = r.scores["model"]
        print(f"  {r.spec.name}: driving score {m['driving_score']:.2f}, progress {100 * m['progress']:.0f}% of the expert's, "
              f"collisions {len(m['collisions'])}, offroad {'yes' if m['offroad'] else 'no'} ({r.logs['model'].wall_s:.1f} s)", file=sys.stderr)

    version = code_version()  # the code that runs, not whatever the tree holds when it ends
    wall0 = time.perf_counter()
    try:
        results = run_all(specs, config, spec, out, workers, threads, policy=policy,
                          show_progress=not args.no_progress and sys.stderr.isatty(), on_done=done, transport=args.transport)
    except ModelSpecError as exc:
        raise CommandError(str(exc)) from exc
    wall_s = time.perf_counter() - wall0
    per_method = {m: [r.scores[m] for r in results] for m in METHODS}
    summary = overall(per_method)
    sim_s = sum(r.scores["model"]["duration_s"] for r in results)  # driven after the warm-ups; an episode may end early
    model = summary["model"]
    metrics = {
        "run": {
            "model": model_path, "config": str(Path(args.config).resolve()) if args.config else "<built-in defaults>",
            "config_values": config.to_dict(), "code_version": version, "device": device_description(device, threads),
            "command": command_line(args),
            "mode": ("lockstep: the node core in this process, sim time waits for the policy" if args.transport == "lockstep" else
                     "dds: the node process over DDS with /clock, sim time at most real time"),
            "world": args.world, "scenario": args.scenario, "episodes": args.episodes, "seeds": [s.seed for s in specs],
            "duration_s": args.duration, "warmup_s": specs[0].warmup_s, "workers": workers, "threads_per_worker": threads,
            "wall_s": wall_s, "sim_s": sim_s, "realtime_factor": sim_s / wall_s if wall_s > 0 else None,
            "realtime_factor_note": "sim_s: seconds the model drove (after the warm-ups, until each episode ended) / wall_s of the whole run",
        },
        "definitions": {
            "driving_score": f"AlpaSim scene score: 0 if collision_at_fault or offroad, else min(clip(progress, 0, 1) / {PROGRESS_SATURATION}, 1) "
                             f"(1 when the expert drove less than {MIN_GT_DISTANCE_M} m)",
            "reference": "the world's expert driving the same episode (AlpaSim's ground-truth trajectory)",
            "docs": "docs/rollout.md",
        },
        "targets": {
            "collision_free_rate >= 0.9": model["collision_free_rate"] >= 0.9,
            "progress >= 0.8": model["progress"] >= 0.8,
            "driving_score > constant_velocity": model["driving_score"] > summary["constant_velocity"]["driving_score"],
        },
        "overall": summary,
        "episodes": {r.spec.name: r.scores for r in results},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    page = write_report(out, metrics, results)
    print(f"{'':34s} {'driving score':>13s} {'no collision':>12s} {'offroad':>8s} {'progress':>9s}")
    for m in METHODS:
        s = summary[m]
        print(f"  {m:32s} {s['driving_score']:13.3f} {s['collision_free_rate']:12.2f} {s['offroad']:8.2f} {s['progress']:9.3f}")
    print(f"{sim_s:.0f} s of model driving in {wall_s:.1f} s ({metrics['run']['realtime_factor']:.2f}x real time)")
    print(f"report: {page}\nmetrics: {out / 'metrics.json'}")
    return 0


def command_line(args: argparse.Namespace) -> str:
    import shlex

    parts = ["vla-ros", "rollout", "--world", args.world, "--transport", args.transport]
    for flag in ("model", "config", "episodes", "seed", "scenario", "duration", "out", "workers"):
        v = getattr(args, flag)
        if v is not None:
            parts += [f"--{flag}", str(v)]
    return shlex.join(parts)
