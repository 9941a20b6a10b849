"""`vla-ros eval` on robot-arm bags (control.mode chunk, or --arm): checks, the run over bags
(eval_runner's jobs and workers), metrics.json, ticks.csv, the report and the printed summary."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from vla_ros.command_error import CommandError
from vla_ros.config import Config


def check_arm_model(path: str, config: Config) -> Any:
    """The model's JointMoTSpec after checking, without building the network, that it is a robot
    policy shaped for this config (cameras, one frame, joints). CommandError otherwise."""
    from vla_ros.model.safetensors_io import CheckpointError
    from vla_ros.model.lerobot_checkpoint import is_lerobot_policy_dir, lerobot_spec

    from vla_ros.model.presets import is_preset

    root = Path(path)
    if is_preset(path):
        raise CommandError(f"model '{path}' is not a robot-arm policy: presets are driving models; arm evaluation "
                           "(control.mode chunk) takes a LeRobot pi0 / pi0.5 policy directory")
    if not root.exists():
        raise CommandError(f"model '{path}' not found (arm evaluation takes a LeRobot pi0 / pi0.5 policy directory)")
    if not is_lerobot_policy_dir(root):
        raise CommandError(f"model '{path}' is not a robot-arm policy: arm evaluation (control.mode chunk) takes a LeRobot "
                           "pi0 / pi0.5 policy directory (config.json beside policy_preprocessor.json)")
    try:
        _, spec, _ = lerobot_spec(root)
    except (CheckpointError, ValueError, OSError) as exc:
        raise CommandError(f"model '{path}': {exc}") from exc
    joints = len(config.arm.joint_names)
    problems = []
    if len(spec.cameras) != len(config.cameras):
        problems.append(f"it takes {len(spec.cameras)} cameras ({', '.join(spec.cameras)}), the config lists {len(config.cameras)}")
    if config.frames.count != 1:
        problems.append(f"it takes one frame per camera, the config has frames.count {config.frames.count}")
    if spec.state_dim != joints:
        problems.append(f"its state has {spec.state_dim} values, the config names {joints} joints (arm.joint_names)")
    if spec.action_dim != joints:
        problems.append(f"its actions have {spec.action_dim} values, the config names {joints} joints (arm.joint_names)")
    if problems:
        raise CommandError(f"model '{path}' does not fit the config: " + "; ".join(problems))
    return spec


def run_arm_eval(args: argparse.Namespace, config: Config) -> int:
    from vla_ros.replay.arm_metrics import HOLD, MODEL, build_arm_metrics
    from vla_ros.replay.arm_report import write_arm_report
    from vla_ros.replay.bag_io import BagError
    from vla_ros.replay.eval_command import _bag_names, command_line
    from vla_ros.replay.eval_runner import (BagJob, ModelSpec, ModelSpecError, check_bags, code_version, device_description,
                                            plan_run)
    from vla_ros.replay.evaluator import EvalOptions

    if not config.chunk_mode:
        config = config.replace(control__mode="chunk")  # --arm: ConfigError (exit 2) without an arm section
    if args.reasoning:
        raise CommandError("--reasoning: pi0 / pi0.5 arm policies generate no text")
    if args.front_camera is not None:
        raise CommandError("--front-camera applies to vehicle evaluations (the arm report shows every joint instead)")
    inf = config.inference
    if inf.backend == "tensorrt":
        raise CommandError("backend 'tensorrt': pi0 / pi0.5 policies run on the torch and onnxruntime backends")
    model_path = args.model or config.model.path
    device = args.device or config.model.device
    if not (device == "cpu" or device.startswith("cuda")):
        raise CommandError(f"--device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    options = EvalOptions.from_command_line(args, inf, reasoning=False)
    if options.samples > 1 and options.noise_scale == 0:
        raise CommandError(f"{options.samples} samples with noise scale 0 give {options.samples} identical chunks; "
                           "add --noise-scale 1 to sample the distribution")
    try:
        check_bags(args.bag)
    except BagError as exc:
        raise CommandError(str(exc)) from exc
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CommandError(f"device '{device}' requested but CUDA is not available on this machine")
    model_spec = check_arm_model(model_path, config)
    spec = ModelSpec(model_path, device, config.model.dtype, inf.backend, max(8, options.samples), 1)
    out = Path(args.out)
    jobs = [BagJob(i, bag, name, None) for i, (bag, name) in enumerate(zip(args.bag, _bag_names(args.bag)))]
    # Ticks at a bag's end whose chunk runs past the recorded commands are skipped cheaply:
    # parts of a bag get the same share of the ticks that run the policy.
    tail = math.ceil(round((model_spec.chunk_size - 1) * config.arm.action_dt_s * options.rate_hz, 6))
    try:
        plan = plan_run(jobs, spec, options, 0, tail, workers=args.workers, threads=args.threads)
    except ModelSpecError as exc:
        raise CommandError(str(exc)) from exc
    out.mkdir(parents=True, exist_ok=True)
    options, workers, threads = plan.options, plan.workers, plan.threads
    run_info = {
        "model": model_path, "model_name": None, "model_parameters": None,
        "config": str(Path(args.config).resolve()) if args.config else "<built-in defaults>",
        "config_values": config.to_dict(), "code_version": code_version(), "device": device_description(device, threads),
        "command": command_line(args), "seed": options.seed, "noise_scale": options.noise_scale, "steps": options.steps,
        "samples": options.samples, "rate_hz": options.rate_hz, "ablate": list(options.ablate), "limit": options.limit,
        "workers": workers, "backend": inf.backend, "dtype": config.model.dtype,
    }
    print(f"evaluating {len(args.bag)} arm bag(s) with {model_path} on {device}, {workers} worker(s) -> {out}", file=sys.stderr)

    def done(r: Any) -> None:
        print(f"  {r.name}: {r.ticks_evaluated} of {r.ticks_total} ticks evaluated in {r.wall_s:.1f} s", file=sys.stderr)

    try:
        evals, wall_s = plan.run(config, spec, on_done=done)
    except ModelSpecError as exc:
        raise CommandError(str(exc)) from exc
    for e in evals:
        run_info.update(e.model_info)
    durations = {e.name: e.ticks_total / options.rate_hz for e in evals}
    metrics = build_arm_metrics(evals, run_info, durations, wall_s)
    import json

    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    _write_ticks_csv(out / "ticks.csv", evals)
    page, md = write_arm_report(out, metrics, evals)

    overall = metrics["overall"]
    print(f"ticks: {overall['ticks_total']} replayed, {overall['ticks_evaluated']} evaluated, {overall['ticks_skipped_total']} skipped")
    for reason, n in overall["ticks_skipped"].items():
        print(f"  skipped {n:5d} x {reason}")
    for reason, n in overall["warnings"].items():
        if n:
            print(f"  warning {n:5d} x {reason}")
    if overall["ticks_evaluated"]:
        m, h, r = overall[MODEL], overall[HOLD], overall["ratio_to_hold"]
        print(f"  model          MAE {m['mae']:.4f}   RMSE {m['rmse']:.4f}")
        print(f"  hold position  MAE {h['mae']:.4f}   RMSE {h['rmse']:.4f}")
        print(f"  model / hold   MAE {r['mae']:.3f}x  RMSE {r['rmse']:.3f}x")
        total = overall["latency_ms"].get("total", {})
        print(f"  latency total p50 {total.get('p50', 0):.1f} ms, p95 {total.get('p95', 0):.1f} ms; "
              f"{overall['timing']['ticks_per_s']:.1f} ticks/s ({overall['timing']['realtime_factor']:.2f}x real time)")
    print(f"report: {page}\nmarkdown: {md}\nmetrics: {out / 'metrics.json'}")
    if overall["ticks_evaluated"] == 0:
        why = []
        for name, b in metrics["bags"].items():
            top = ", ".join(f"{k} x{v}" for k, v in sorted(b["ticks_skipped"].items(), key=lambda kv: -kv[1])[:3])
            missing = f"; topics not in the bag: {', '.join(b['missing_topics'])}" if b["missing_topics"] else ""
            why.append(f"{name}: {b['ticks_total']} ticks, none evaluated ({top or 'no ticks'}{missing})")
        print("vla-ros eval: nothing could be evaluated: " + "; ".join(why), file=sys.stderr)
        return 1
    return 0


def _write_ticks_csv(path: Path, evals: Any) -> None:
    import csv

    import numpy as np

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["bag", "tick", "tick_time_s", "t0_s", "model_mae", "model_rmse", "hold_mae", "hold_rmse", "truncated_tokens",
                    "instruction", "stack_ms", "policy_ms", "total_ms"])
        for e in evals:
            for r in e.records:
                me, he = r.model_error, r.hold_error
                t = r.timings_ms
                w.writerow([e.name, r.index, f"{r.tick_ns / 1e9:.9f}", f"{r.t0_ns / 1e9:.9f}", f"{np.abs(me).mean():.6f}",
                            f"{np.sqrt((me ** 2).mean()):.6f}", f"{np.abs(he).mean():.6f}", f"{np.sqrt((he ** 2).mean()):.6f}",
                            r.truncated_tokens, r.instruction, f"{t.get('stack', 0):.3f}", f"{t.get('policy', 0):.3f}",
                            f"{t.get('total', 0):.3f}"])
