"""`vla-ros bench TARGET`: benchmarks that print ratios against a baseline measured in the same run."""
from __future__ import annotations

import argparse
import json

HELP = "benchmark a runtime component against its baseline"
DESCRIPTION = """Benchmarks. Targets:
  runtime   the Policy (prefill, denoise, reasoning) against the straightforward transformers
            path of the released Alpamayo-R1 code, on synthetic ticks; for a LeRobot pi0 / pi0.5
            directory, against the uncached joint forward (LeRobot itself: bench/lerobot.py)"""


def _add_runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="random:tiny", help="checkpoint directory or preset (default random:tiny)")
    p.add_argument("--steps", type=int, default=10, help="flow-matching steps (default 10)")
    p.add_argument("--samples", type=int, default=1, help="trajectory samples sharing one prefix (default 1)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: bfloat16 on CUDA, float32 on CPU)")
    p.add_argument("--repeats", type=int, default=10, help="timed repetitions, medians reported (default 10)")
    p.add_argument("--reasoning-tokens", type=int, default=16, help="tokens decoded for the reasoning figure (default 16)")
    p.add_argument("--no-cuda-graph", action="store_true", help="on CUDA, run the denoise loop eagerly")
    p.add_argument("--image-size", default=None, help="HxW of the synthetic camera frames (default: the model input size, as the sensing layer decodes to)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of torch and of an exported backend (default: torch's choice; "
                        "--backend onnxruntime on the CPU then runs ONNX Runtime at 1 and at 2 threads)")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime", "tensorrt"],
                   help="torch (vs the transformers baseline) or an exported backend (vs the torch runtime)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _run_runtime(args: argparse.Namespace) -> int:
    from vla_ros.command_error import CommandError

    if args.steps < 1 or args.samples < 1 or args.repeats < 1 or args.reasoning_tokens < 1:
        raise CommandError("--steps, --samples, --repeats and --reasoning-tokens must be >= 1")
    image_hw = None
    if args.image_size:
        try:
            h, w = (int(v) for v in args.image_size.lower().split("x"))
        except ValueError as exc:
            raise CommandError(f"--image-size must look like 320x576, got {args.image_size!r}") from exc
        image_hw = (h, w)
    import torch

    from vla_ros.model import CheckpointError, UnknownPresetError
    from vla_ros.runtime.commands.command_options import apply_threads_and_device
    from vla_ros.runtime.tools.bench import format_report, run_bench

    apply_threads_and_device(args.threads, args.device)
    if args.backend != "torch":  # exported backends: vs the torch runtime, same run (backend_bench.py)
        from vla_ros.runtime.tools.backend_bench import format_backend_report, run_backend_bench
        from vla_ros.runtime.export.onnx_export import ExportError

        dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
        # ONNX Runtime on the CPU without --threads: its own thread count at 1 and 2 (torch keeps
        # its default), so the report shows which one this CPU runs best.
        counts: list[int | None] = [args.threads]
        if args.backend == "onnxruntime" and args.threads is None and not args.device.startswith("cuda"):
            counts = [1, 2]
        for n in counts:
            try:
                result = run_backend_bench(args.model, args.backend, device=args.device, dtype=dtype, steps=args.steps,
                                           samples=args.samples, repeats=args.repeats, threads=n, image_hw=image_hw)
            except (CheckpointError, UnknownPresetError, ExportError, ValueError) as exc:
                raise CommandError(str(exc)) from exc
            print(json.dumps(result) if args.json else format_backend_report(result) + ("\n" if len(counts) > 1 else ""))
        return 0
    from vla_ros.model.lerobot_checkpoint import is_lerobot_policy_dir

    if is_lerobot_policy_dir(args.model):  # pi0 / pi0.5 (joint_mot): vs the uncached joint forward
        from vla_ros.runtime.tools.bench_joint_mot import format_joint_mot_report, run_joint_mot_bench
        from vla_ros.runtime.policy import Policy

        try:
            policy = Policy.from_pretrained(args.model, device=args.device, dtype=args.dtype, max_samples=args.samples,
                                            cuda_graph=False if args.no_cuda_graph else None)
        except (CheckpointError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        result = run_joint_mot_bench(policy, args.model, steps=args.steps, samples=args.samples, repeats=args.repeats)
        result["threads"] = torch.get_num_threads()
        print(json.dumps(result) if args.json else format_joint_mot_report(result))
        return 0
    try:
        result = run_bench(args.model, device=args.device, dtype=args.dtype, steps=args.steps, samples=args.samples,
                           repeats=args.repeats, reasoning_tokens=args.reasoning_tokens,
                           cuda_graph=False if args.no_cuda_graph else None, image_hw=image_hw)
    except (CheckpointError, UnknownPresetError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    result["threads"] = torch.get_num_threads()
    print(json.dumps(result) if args.json else format_report(result))
    return 0


# target name -> (help, add_arguments, run); later issues add targets here
TARGETS = {"runtime": ("Policy prefill/denoise/reasoning vs the transformers baseline", _add_runtime, _run_runtime)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    for name, (help_text, add, run_fn) in TARGETS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add(p)
        p.set_defaults(_bench_run=run_fn)


def run(args: argparse.Namespace) -> int:
    return int(args._bench_run(args))
