#!/usr/bin/env python3
"""pi0 / pi0.5 benchmark: vla_ros's runtime against LeRobot's own predict_action_chunk, on the same
fixture weights, inputs and noise (test/fixtures/lerobot_{pi0,pi05}_tiny), same CPU, one run.

    .venv/bin/python bench/lerobot.py                      # both fixtures, 10 timed calls each
    .venv/bin/python bench/lerobot.py --json out.json      # also write the raw results
    .venv/bin/python bench/lerobot.py --backend onnxruntime
                                                           # vla_ros on its ONNX export (ONNX Runtime, CPU)
    python3 bench/lerobot.py --full-size --device cuda --lerobot-python python3
                                                           # real-size random pi0/pi0.5 on a GPU, both sides

LeRobot runs in its side venv (made by `scripts/make_reference_fixtures lerobot`; found at
$REFERENCE_VENV_ROOT/lerobot, default /work/sidevenvs/lerobot); when that venv is absent the bench says
so and reports no LeRobot time. It times `policy.predict_action_chunk(batch, noise=...)` on the
preprocessed fixture batch (the processors run once, outside the timing), after one warm-up call, in
one torch thread unless --threads says otherwise, and checks the unnormalized actions against the
fixture's. Each result carries the 1-minute load average: on a shared machine, compare runs with care.

Target (issue 19): vla_ros >= 2x LeRobot on CPU with equal actions (max abs diff <= 1e-4, fp32).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = {"pi0": ROOT / "test/fixtures/lerobot_pi0_tiny", "pi05": ROOT / "test/fixtures/lerobot_pi05_tiny"}
LEROBOT_SCRIPT = ROOT / "scripts/reference_fixtures/lerobot.py"


def lerobot_python(given: str | None) -> Path:
    if given:
        return Path(shutil.which(given) or given)
    venv = os.environ.get("REFERENCE_VENV") or Path(os.environ.get("REFERENCE_VENV_ROOT", "/work/sidevenvs")) / "lerobot"
    return Path(venv) / "bin" / "python"


def run_lerobot(python: Path, args: list[str]) -> dict:
    if not python.exists():
        return {"available": False,
                "reason": f"LeRobot side venv absent ({python}); make it with scripts/make_reference_fixtures lerobot"}
    cmd = [str(python), str(LEROBOT_SCRIPT), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {"available": False, "reason": f"LeRobot run failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["available"] = True
    return result


def time_lerobot(python: Path, fixture: Path, repeats: int, threads: int | None) -> dict:
    args = ["--time", str(fixture), "--repeats", str(repeats)]
    if threads:
        args += ["--threads", str(threads)]  # 0 / None: torch's default
    return run_lerobot(python, args)


def time_vla_ros(fixture: Path, repeats: int, threads: int | None, backend: str = "torch") -> dict:
    """vla_ros's side: the fixture directory loaded as `--model DIR` loads it, the same raw inputs
    (reference.safetensors "input.*", reference.json "tasks") through vla_ros's own processors, the
    recorded noise ("flow.noise"), one warm-up, `repeats` timed calls. One call is `Policy.act` once per
    sample of the batch (the runtime prefills one prefix per tick; LeRobot's batch holds two different
    prompts), from raw inputs to unnormalized actions, so it includes the pre/post-processing that
    LeRobot's timed call leaves out. The vision cache is not used (no camera names or stamps).
    backend "onnxruntime": the same Policy on the directory's ONNX export (made or reused in the
    export cache before the timing), ONNX Runtime on the CPU at `threads` intra-op threads."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    from vla_ros.model.families.joint_mot import resize_with_pad
    from vla_ros.runtime import Policy
    from vla_ros.runtime.inputs import PolicyInputs

    if threads:
        torch.set_num_threads(threads)
    ref = load_file(str(fixture / "reference.safetensors"))
    meta = json.loads((fixture / "reference.json").read_text())
    extra = {} if backend == "torch" else {"backend": backend, "threads": threads or None}
    policy = Policy.from_pretrained(fixture, **extra)
    res = policy.image_size_hw[0]
    inputs = []
    for b in range(meta["batch"]):
        cams = [ref[f"input.{c}"][b:b + 1] for c in meta["cameras"]]
        if any(c.shape != cams[0].shape for c in cams):  # PolicyInputs holds one size for all cameras
            cams = [resize_with_pad(c, res) for c in cams]
        inputs.append(PolicyInputs(images=torch.cat(cams).permute(0, 2, 3, 1)[:, None].numpy(),
                                   state=ref["input.observation.state"][b].numpy(), task=meta["tasks"][b]))
    noise = [ref["flow.noise"][b:b + 1] for b in range(meta["batch"])]

    def chunk() -> np.ndarray:
        return np.concatenate([policy.act(inp, noise=n).actions for inp, n in zip(inputs, noise)])

    chunk()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        actions = chunk()
        times.append(time.perf_counter() - t0)
    return {
        "available": True, "implementation": f"vla_ros Policy.act (joint_mot, {backend} backend, float32)",
        "backend": backend,
        "fixture": str(fixture), "variant": meta["variant"], "batch": meta["batch"],
        "chunk_size": meta["chunk_size"], "num_inference_steps": meta["num_inference_steps"],
        "torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": repeats,
        "ms_median": 1000 * float(np.median(times)), "ms_min": 1000 * float(np.min(times)),
        "ms_all": [round(1000 * t, 3) for t in times],
        "max_abs_diff_vs_fixture": float(np.abs(actions - ref["output.actions"].numpy()).max()),
        "loadavg_1min": os.getloadavg()[0], "cpus": os.cpu_count(),
    }


class _FixedPrompt:
    """48 fixed token ids for every prompt, as LeRobot's full-size timing feeds random ids."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    def encode_prompt(self, text: str, max_length: int) -> list[int]:
        return self.ids[:max_length]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return ""


def time_vla_ros_full_size(variant: str, device: str, repeats: int, dtype: str = "bfloat16",
                           sizes: dict | None = None) -> dict:
    """vla_ros at LeRobot's real sizes (gemma_2b + gemma_300m + SigLIP So400m/14 unless `sizes`
    overrides them), random weights, 3 cameras of 224x224, 48 prompt tokens, 50 actions, 10 steps,
    batch 1: `Policy.act` (CUDA graph on CUDA) after two warm-ups."""
    try:
        sys.path.insert(0, str(ROOT))
        import numpy as np
        import torch

        from vla_ros.model.families.joint_mot import GemmaSize, JointMoT, JointMoTSpec, VisionSize
        from vla_ros.model.lerobot_checkpoint import GEMMA_VARIANTS, SIGLIP_SO400M, VOCAB_SIZE, joint_mot_config
        from vla_ros.runtime import Policy
        from vla_ros.runtime.inputs import PolicyInputs
    except Exception as exc:  # this python lacks vla_ros's dependencies
        return {"available": False, "reason": f"vla_ros not importable here: {exc}"}
    sizes = sizes or {}
    ident = {"mean": torch.zeros(32), "std": torch.ones(32)}
    spec = JointMoTSpec(
        variant=variant, vlm=GemmaSize(**sizes.get("vlm", GEMMA_VARIANTS["gemma_2b"])),
        expert=GemmaSize(**sizes.get("expert", GEMMA_VARIANTS["gemma_300m"])),
        vision=VisionSize(**sizes.get("vision", SIGLIP_SO400M)), vocab_size=sizes.get("vocab", VOCAB_SIZE),
        resolution=224, cameras=("cam0", "cam1", "cam2"), state_dim=32, action_dim=32, max_state_dim=32,
        max_action_dim=32, chunk_size=50, min_period=4e-3, max_period=4.0, tokenizer_max_length=48,
        normalization="MEAN_STD", eps=1e-8, state_stats=ident, action_stats=ident)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = JointMoT(joint_mot_config(spec, 10, f"random full-size {variant}"), spec)
    model.to(getattr(torch, dtype)).eval()
    build_s = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(0)
    tok = _FixedPrompt(torch.randint(0, spec.vocab_size, (48,), generator=gen).tolist())
    policy = Policy(model, tok, max_samples=1)
    inputs = PolicyInputs(images=torch.rand(3, 1, 224, 224, 3, generator=gen).numpy(),
                          state=torch.randn(32, generator=gen).numpy(), task="full-size timing")
    noise = torch.randn(1, 50, 32, generator=gen)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 2):  # two warm-ups (the second after the CUDA graph capture)
            sync()
            t = time.perf_counter()
            out = policy.act(inputs, noise=noise)
            sync()
            if i >= 2:
                times.append(time.perf_counter() - t)
    return {
        "available": True, "implementation": "vla_ros Policy.act (joint_mot, torch backend"
        + (", CUDA graph)" if policy.backend.use_cuda_graph else ")"),
        "variant": variant, "sizes": sizes or "gemma_2b + gemma_300m + SigLIP So400m/14 (real sizes, random weights)",
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu", "dtype": dtype,
        "batch": 1, "cameras": 3, "image": 224, "prompt_tokens": 48, "chunk_size": 50, "num_inference_steps": 10,
        "parameters": model.num_parameters(), "build_s": build_s, "torch": torch.__version__, "repeats": repeats,
        "ms_median": 1000 * float(np.median(times)), "ms_min": 1000 * float(np.min(times)),
        "ms_all": [round(1000 * t, 3) for t in times], "finite": bool(np.isfinite(out.actions).all()),
        "timings_last_call": {k: v for k, v in vars(out.timings).items() if v is not None},
        "peak_gpu_mem_gb": torch.cuda.max_memory_allocated() / 1e9 if device.startswith("cuda") else None,
    }


def main_full_size(args, variants: list[str]) -> list[dict]:
    """Real sizes (PaliGemma 3B + 300M expert), random weights, on --device: LeRobot's time as the anchor."""
    results = []
    for v in variants:
        lr = run_lerobot(lerobot_python(args.lerobot_python),
                         ["--time-full-size", v, "--device", args.device, "--repeats", str(args.repeats)])
        ours = time_vla_ros_full_size(v, args.device, args.repeats)
        row = {"variant": v, "mode": "full-size", "lerobot": lr, "vla_ros": ours}
        if lr.get("available") and ours.get("available"):
            row["speedup"] = lr["ms_median"] / ours["ms_median"]
        results.append(row)
        print(json.dumps(row))
        for side, r in (("lerobot", lr), (f"vla_ros ({args.backend})", ours)):
            if r.get("available"):
                print(f"# {v} full size, {side} on {r['device']} {r['dtype']}: {r['ms_median']:.1f} ms median per chunk "
                      f"(3 cameras, 48 tokens, 50 actions, 10 steps)", file=sys.stderr)
            else:
                print(f"# {v} full size, {side}: {r['reason']}", file=sys.stderr)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=["pi0", "pi05", "all"], default="all")
    ap.add_argument("--full-size", action="store_true",
                    help="instead of the fixtures: real-size random pi0/pi0.5 (3 cameras, 48 tokens) on --device")
    ap.add_argument("--device", default="cuda", help="--full-size only (default cuda)")
    ap.add_argument("--lerobot-python", help="python that has lerobot 0.6.1 (default: the side venv's)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both sides (default 1: on a shared 2-core machine more threads "
                         "oversubscribe and the times scatter by 10x; 0 = torch's default)")
    ap.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch",
                    help="vla_ros's backend (fixtures only; default torch)")
    ap.add_argument("--json", type=Path, help="write the raw results to this file as well")
    args = ap.parse_args()
    variants = ["pi0", "pi05"] if args.variant == "all" else [args.variant]
    if args.full_size:
        results = main_full_size(args, variants)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        return 0
    results = []
    for v in variants:
        fixture = FIXTURES[v]
        lr = time_lerobot(lerobot_python(args.lerobot_python), fixture, args.repeats, args.threads)
        ours = time_vla_ros(fixture, args.repeats, args.threads, args.backend)
        row = {"variant": v, "fixture": str(fixture.relative_to(ROOT)), "lerobot": lr, "vla_ros": ours}
        if lr.get("available") and ours.get("available"):
            row["speedup"] = lr["ms_median"] / ours["ms_median"]
            row["speedup_min"] = lr["ms_min"] / ours["ms_min"]  # the fastest call: least disturbed by other load
        results.append(row)
        print(json.dumps(row))
        for side, r in (("lerobot", lr), (f"vla_ros ({args.backend})", ours)):
            if r.get("available"):
                print(f"# {v} {side}: {r['ms_median']:.1f} ms median per chunk (batch {r['batch']}, "
                      f"{r['num_inference_steps']} steps, {r['threads']} threads), max abs diff vs fixture "
                      f"{r['max_abs_diff_vs_fixture']:.2e}", file=sys.stderr)
            else:
                print(f"# {v} {side}: {r['reason']}", file=sys.stderr)
        if "speedup" in row:
            print(f"# {v} vla_ros / lerobot speedup: {row['speedup']:.2f}x (medians), {row['speedup_min']:.2f}x "
                  f"(fastest calls)", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
