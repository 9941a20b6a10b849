"""`vla-ros eval`: open-loop evaluation of a policy on recorded bags."""
from __future__ import annotations

import argparse

HELP = "replay bags through the sensing pipeline and the policy; write metrics, a report and an output bag"
DESCRIPTION = """\
Replay rosbag2 recordings (MCAP or sqlite3) deterministically in sim time through the same sensing
pipeline and Policy the node uses. At every tick with a complete stack and a complete recorded
future, compare the predicted trajectory with the future ego path from odometry (in the t0 ego
frame), next to two baselines estimated from the same history: constant velocity, and constant
velocity + yaw rate.

Writes into --out:
  metrics.json      overall and per-bag metrics (ADE/FDE, horizons, minADE@K, lateral and
                    longitudinal error, miss rate, skipped ticks by reason, latency percentiles)
  ticks.csv         one row per evaluated tick
  report.html       self-contained report (figures embedded)
  report.md         the same report; figures in plots/*.png
  predictions.mcap  input odometry + /vla/trajectory, /vla/ground_truth_path, /vla/baseline/*,
                    /vla/reasoning (with several bags: predictions/<bag>.mcap each)

Robot arms (control.mode chunk in the config, e.g. config/arm.yaml, or --arm): at every tick with
a stack (cameras and the joint state at t0), an instruction (the bag's latest std_msgs/String, else
arm.instruction) and recorded commands covering the chunk, the policy's chunk is compared with the
recorded trajectory_msgs/JointTrajectory commands (action i due at t0 + i * arm.action_dt_s) and
with holding the joint state at t0: MAE and RMSE per joint and per step, their ratio, latency.
Writes metrics.json, ticks.csv, report.html and report.md (no output bag); see docs/arm.md.

Exit status: 0 when at least one tick was evaluated, 1 when nothing could be (the reason is
printed), 2 for a usage, config or model error (reported before any work).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bag", action="append", required=True, metavar="BAG", help="rosbag2 directory or .mcap/.db3 file (repeat for several bags)")
    p.add_argument("--model", default=None, help="checkpoint directory or preset such as random:tiny (default: config model.path)")
    p.add_argument("--config", default=None, help="YAML config (default: built-in defaults = config/drive.yaml)")
    p.add_argument("--out", required=True, help="output directory (created if missing; this command's files in it are replaced)")
    p.add_argument("--rate", type=float, default=None, help="tick rate in Hz of sim time (default: config inference.rate_hz)")
    p.add_argument("--steps", type=int, default=None, help="flow-matching steps (default: config inference.steps)")
    p.add_argument("--samples", type=int, default=None, help="trajectories sampled per tick, K for minADE@K (default: config inference.samples)")
    p.add_argument("--seed", type=int, default=None, help="noise seed (default: config inference.seed)")
    p.add_argument("--noise-scale", type=float, default=None,
                   help="scale of the flow-matching start noise: 1 samples the learned distribution, 0 gives one "
                        "deterministic trajectory from zero start noise (default: config inference.noise_scale, 0)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: config model.device)")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), default=None, help="inference backend (default: config inference.backend)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes, each loading its own model; bags run in parallel and, with more workers than "
                        "bags, each bag is cut into tick ranges that run side by side (same results as 1 worker). "
                        "Default: the CPU cores on cpu, 1 on cuda")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per worker (default: cores // workers; 1 is fastest on a busy machine)")
    p.add_argument("--reasoning", action=argparse.BooleanOptionalAction, default=None,
                   help="decode reasoning text at every tick (default: config inference.reasoning)")
    p.add_argument("--ablate", action="append", choices=["cameras"], default=[],
                   help="'cameras': replace every camera image by flat grey before the policy")
    p.add_argument("--limit", type=int, default=None, help="stop each bag after N evaluated ticks (quick runs)")
    p.add_argument("--front-camera", default=None, help="camera shown in the report gallery (default: front_wide or the first 'front*')")
    p.add_argument("--arm", action="store_true",
                   help="evaluate a robot arm's action chunks against its recorded joint commands (implied by control.mode: chunk)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (they are off anyway when stderr is not a terminal)")


def _validate_flags(args: argparse.Namespace) -> None:
    from vla_ros.command_error import CommandError

    if args.noise_scale is not None and not args.noise_scale >= 0:
        raise CommandError(f"--noise-scale must be >= 0, got {args.noise_scale}")
    for flag, low in (("rate", 0.0), ("steps", 1), ("samples", 1), ("workers", 1), ("limit", 1), ("threads", 1)):
        v = getattr(args, flag)
        if v is None:
            continue
        if (flag == "rate" and not v > low) or (flag != "rate" and v < low):
            raise CommandError(f"--{flag} must be {'> 0' if flag == 'rate' else f'>= {low}'}, got {v}")


def _bag_names(bags: list[str]) -> list[str]:
    """Unique, file-system safe names: the bag's stem, suffixed _2, _3 ... on collisions."""
    import re
    from pathlib import Path

    names: list[str] = []
    for b in bags:
        p = Path(b)
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", p.stem if p.suffix in (".mcap", ".db3") else p.name) or "bag"
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def run(args: argparse.Namespace) -> int:
    import csv
    import json
    import sys
    from pathlib import Path

    from vla_ros.command_error import CommandError
    from vla_ros.config import load_config
    from vla_ros.replay.bag_io import BagError
    from vla_ros.replay.eval_runner import (BagJob, ModelSpec, ModelSpecError, check_bags, check_model, code_version,
                                            device_description, plan_run, unevaluable_ticks)
    from vla_ros.replay.evaluator import EvalOptions, pick_front_camera
    from vla_ros.replay.report import write_report
    from vla_ros.replay.summary import METHODS, build_metrics

    _validate_flags(args)
    config = load_config(args.config)  # ConfigError -> message naming the key, exit 2
    if args.backend:
        config = config.replace(inference__backend=args.backend)
    if args.arm or config.chunk_mode:
        from vla_ros.replay.arm_eval import run_arm_eval

        return run_arm_eval(args, config)
    inf = config.inference
    model_path = args.model or config.model.path
    device = args.device or config.model.device
    if not (device == "cpu" or device.startswith("cuda")):
        raise CommandError(f"--device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    options = EvalOptions.from_command_line(args, inf, reasoning=args.reasoning if args.reasoning is not None else inf.reasoning,
                                            front_camera=args.front_camera)
    if options.samples > 1 and options.noise_scale == 0:
        raise CommandError(f"{options.samples} samples (--samples / inference.samples) with noise scale 0 give {options.samples} "
                           "identical trajectories (inference.noise_scale is 0 by default); add --noise-scale 1 to sample the distribution")
    try:
        pick_front_camera(config, args.front_camera)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    try:
        check_bags(args.bag)
    except BagError as exc:
        raise CommandError(str(exc)) from exc
    spec = ModelSpec(model_path, device, config.model.dtype, inf.backend, max(8, options.samples), max(64, inf.max_reasoning_tokens),
                     config.navigation.policy_guidance_weight)
    out = Path(args.out)
    names = _bag_names(args.bag)
    single = len(args.bag) == 1
    jobs = [
        BagJob(i, bag, name, str(out / "predictions.mcap") if single else str(out / "predictions" / f"{name}.mcap"))
        for i, (bag, name) in enumerate(zip(args.bag, names))
    ]
    try:
        model_config = check_model(spec, config)
        head, tail = unevaluable_ticks(config, model_config, options.rate_hz)
        plan = plan_run(jobs, spec, options, head, tail, workers=args.workers, threads=args.threads)
    except ModelSpecError as exc:
        raise CommandError(str(exc)) from exc
    out.mkdir(parents=True, exist_ok=True)
    options, workers, threads = plan.options, plan.workers, plan.threads
    run_info = {
        "model": model_path,
        "model_name": None,
        "model_parameters": None,
        "config": str(Path(args.config).resolve()) if args.config else "<built-in defaults>",
        "config_values": config.to_dict(),
        "code_version": code_version(),
        "device": device_description(device, threads),
        "command": command_line(args),
        "seed": options.seed,
        "noise_scale": options.noise_scale,
        "steps": options.steps,
        "samples": options.samples,
        "reasoning": options.reasoning,
        "max_reasoning_tokens": options.max_reasoning_tokens if options.reasoning else None,
        "rate_hz": options.rate_hz,
        "ablate": list(options.ablate),
        "limit": options.limit,
        "workers": workers,
        "backend": inf.backend,
        "dtype": config.model.dtype,
    }
    print(f"evaluating {len(args.bag)} bag(s) with {model_path} on {device}, {workers} worker(s) -> {out}", file=sys.stderr)

    def done(r) -> None:
        print(f"  {r.name}: {r.ticks_evaluated} of {r.ticks_total} ticks evaluated in {r.wall_s:.1f} s", file=sys.stderr)

    try:
        evals, wall_s = plan.run(config, spec, on_done=done)
    except ModelSpecError as exc:  # a worker could not load the model
        raise CommandError(str(exc)) from exc
    for e in evals:  # the workers report what they loaded
        run_info.update(e.model_info)
        if e.predictions_bag:  # relative to --out, so the directory can be moved
            e.predictions_bag = str(Path(e.predictions_bag).relative_to(out))
    durations = {e.name: e.ticks_total / options.rate_hz for e in evals}
    metrics = build_metrics(evals, run_info, durations, wall_s)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    _write_ticks_csv(out / "ticks.csv", evals, METHODS, csv)
    page, md = write_report(out, metrics, evals)

    overall = metrics["overall"]
    print(f"ticks: {overall['ticks_total']} replayed, {overall['ticks_evaluated']} evaluated, {overall['ticks_skipped_total']} skipped")
    for reason, n in overall["ticks_skipped"].items():
        print(f"  skipped {n:5d} x {reason}")
    if overall["ticks_evaluated"]:
        for m in METHODS:
            b = overall[m]
            print(f"  {m:28s} ADE {b['ade']:7.3f} m   FDE {b['fde']:7.3f} m   miss rate {b['miss_rate']:.3f}")
        total = overall["latency_ms"].get("total", {})
        print(f"  latency total p50 {total.get('p50', 0):.1f} ms, p95 {total.get('p95', 0):.1f} ms; "
              f"{overall['timing']['ticks_per_s']:.1f} ticks/s ({overall['timing']['realtime_factor']:.2f}x real time)")
    print(f"report: {page}\nmarkdown: {md}\nmetrics: {out / 'metrics.json'}")
    if overall["ticks_evaluated"] == 0:
        print("vla-ros eval: nothing could be evaluated: " + _why_nothing(metrics), file=sys.stderr)
        return 1
    return 0


def command_line(args: argparse.Namespace) -> str:
    """The command as parsed, canonical and re-runnable (the same however it was invoked)."""
    import shlex

    parts = ["vla-ros", "eval"]
    for bag in args.bag:
        parts += ["--bag", bag]
    for flag in ("model", "config", "out", "rate", "steps", "samples", "seed", "noise_scale", "device", "workers", "threads", "limit",
                 "front_camera"):
        v = getattr(args, flag)
        if v is not None:
            parts += [f"--{flag.replace('_', '-')}", str(v)]
    if args.reasoning is not None:
        parts.append("--reasoning" if args.reasoning else "--no-reasoning")
    for a in args.ablate:
        parts += ["--ablate", a]
    if getattr(args, "arm", False):
        parts.append("--arm")
    if args.no_progress:
        parts.append("--no-progress")
    return shlex.join(parts)


def _why_nothing(metrics: dict) -> str:
    parts = []
    for name, b in metrics["bags"].items():
        why = []
        if b.get("missing_topics"):
            why.append("topics not in the bag: " + ", ".join(b["missing_topics"]))
        if b.get("error"):
            why.append(b["error"])
        top = sorted(b["ticks_skipped"].items(), key=lambda kv: -kv[1])[:3]
        if top:
            why.append("skipped " + ", ".join(f"{k} x{v}" for k, v in top))
        if not b["ticks_total"]:
            why.append("no ticks (empty bag)")
        parts.append(f"{name}: {b['ticks_total']} ticks, none evaluated ({'; '.join(why) or 'no reason recorded'})")
    return "; ".join(parts)


def _write_ticks_csv(path, evals, methods, csv) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        navigation = any(e.navigation for e in evals)  # a column only when navigation.topic is set
        w.writerow(["bag", "tick", "tick_time_s", "t0_s", *[f"{m}_{k}" for m in methods for k in ("ade", "fde")], "stack_ms", "policy_ms",
                    "total_ms", *(["navigation"] if navigation else [])])
        for e in evals:
            for r in e.records:
                errs = [f"{v:.6f}" for m in methods for v in (r.errors[m].ade, r.errors[m].fde)]
                t = r.timings_ms
                w.writerow([e.name, r.index, f"{r.tick_ns / 1e9:.9f}", f"{r.t0_ns / 1e9:.9f}", *errs,
                            f"{t.get('stack', 0):.3f}", f"{t.get('policy', 0):.3f}", f"{t.get('total', 0):.3f}",
                            *([r.navigation or ""] if navigation else [])])
