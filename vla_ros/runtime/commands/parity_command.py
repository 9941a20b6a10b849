"""`vla-ros parity`: a backend against the torch runtime on the same tick, within tolerances."""
from __future__ import annotations

import argparse
import json

HELP = "check a backend's outputs against the torch runtime (vision, prefix K/V, velocity, trajectory / actions)"
DESCRIPTION = """Run one synthetic tick through --backend and the float32 torch runtime and report,
for the vision features, the prefix K/V, one step's velocity and the final trajectory (for a
LeRobot pi0 / pi0.5 directory: the unnormalized action chunk of an arm tick), the max absolute
difference, the RMSE and the index of the worst element. Fails (exit status 1) when a stage
exceeds its tolerance:

  fp32   1e-4 features / K/V / velocity, 1e-3 m trajectory, 1e-4 actions (only summation order differs)
  fp16   5e-2, 5e-2, 5e-2, 0.25 m, 5e-2  (11-bit mantissa rounding in every layer)
  bf16   2e-1, 2e-1, 2.5e-1, 0.5 m, 2.5e-1  (8-bit mantissa rounding in every layer)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="random:tiny", help="checkpoint directory or preset (default random:tiny)")
    parser.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "tensorrt", "torch"],
                        help="backend under test (default onnxruntime)")
    parser.add_argument("--ref", default="torch", choices=["torch"], help="reference backend (float32; default torch)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"], help="backend precision (default fp32)")
    parser.add_argument("--samples", type=int, default=1, help="trajectory samples (default 1)")
    parser.add_argument("--steps", type=int, default=None, help="flow steps (default: the model's)")
    parser.add_argument("--export-dir", default=None, help="use this export directory instead of the cache")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and onnxruntime")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from vla_ros.command_error import CommandError

    if args.samples < 1 or (args.steps is not None and args.steps < 1):
        raise CommandError("--samples and --steps must be >= 1")
    from vla_ros.model import CheckpointError, UnknownPresetError
    from vla_ros.runtime.commands.command_options import apply_threads_and_device
    from vla_ros.runtime.export.onnx_export import ExportError
    from vla_ros.runtime.tools.parity import format_report, run_parity

    apply_threads_and_device(args.threads, args.device)
    extra = {"export_dir": args.export_dir} if args.export_dir and args.backend != "torch" else {}
    try:
        report = run_parity(args.model, backend=args.backend, ref=args.ref, device=args.device, dtype=args.dtype,
                            samples=args.samples, steps=args.steps, threads=args.threads, **extra)
    except (CheckpointError, UnknownPresetError, ExportError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    print(json.dumps(report) if args.json else format_report(report))
    return 0 if report["passed"] else 1
