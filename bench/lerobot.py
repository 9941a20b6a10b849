#!/usr/bin/env python3
"""pi0 / pi0.5 benchmark: vla_ros's runtime against LeRobot's own predict_action_chunk, on the same
fixture weights, inputs and noise (test/fixtures/lerobot_{pi0,pi05}_tiny), same CPU, one run.

    .venv/bin/python bench/lerobot.py                      # both fixtures, 10 timed calls each
    .venv/bin/python bench/lerobot.py --json out.json      # also write the raw results
    python3 bench/lerobot.py --full-size --device cuda --lerobot-python python3
                                                           # real-size random pi0/pi0.5 on a GPU (LeRobot side)

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


def time_vla_ros(fixture: Path, repeats: int, threads: int | None) -> dict:
    """vla_ros's side: the fixture directory loaded as `--model DIR` loads it, the same raw inputs
    (reference.safetensors "input.*", reference.json "tasks") through vla_ros's own processors, the
    recorded noise ("flow.noise"), one warm-up, `repeats` timed calls. One call is `Policy.act` once per
    sample of the batch (the runtime prefills one prefix per tick; LeRobot's batch holds two different
    prompts), from raw inputs to unnormalized actions, so it includes the pre/post-processing that
    LeRobot's timed call leaves out. The vision cache is not used (no camera names or stamps)."""
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
    policy = Policy.from_pretrained(fixture)
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
        "available": True, "implementation": "vla_ros Policy.act (joint_mot, torch backend, float32)",
        "fixture": str(fixture), "variant": meta["variant"], "batch": meta["batch"],
        "chunk_size": meta["chunk_size"], "num_inference_steps": meta["num_inference_steps"],
        "torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": repeats,
        "ms_median": 1000 * float(np.median(times)), "ms_min": 1000 * float(np.min(times)),
        "ms_all": [round(1000 * t, 3) for t in times],
        "max_abs_diff_vs_fixture": float(np.abs(actions - ref["output.actions"].numpy()).max()),
        "loadavg_1min": os.getloadavg()[0], "cpus": os.cpu_count(),
    }


def main_full_size(args, variants: list[str]) -> list[dict]:
    """Real sizes (PaliGemma 3B + 300M expert), random weights, on --device: LeRobot's time as the anchor."""
    results = []
    for v in variants:
        lr = run_lerobot(lerobot_python(args.lerobot_python),
                         ["--time-full-size", v, "--device", args.device, "--repeats", str(args.repeats)])
        row = {"variant": v, "mode": "full-size", "lerobot": lr,
               "vla_ros": {"available": False, "reason": "not implemented: this bench builds no real-size random "
                                                         "joint_mot model (it needs a GPU run; see docs/pi0.md)"}}
        results.append(row)
        print(json.dumps(row))
        if lr.get("available"):
            print(f"# {v} full size, lerobot on {lr['device']} {lr['dtype']}: {lr['ms_median']:.1f} ms median per chunk "
                  f"(3 cameras, 48 tokens, 50 actions, 10 steps)", file=sys.stderr)
        else:
            print(f"# {v} full size, lerobot: {lr['reason']}", file=sys.stderr)
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
        ours = time_vla_ros(fixture, args.repeats, args.threads)
        row = {"variant": v, "fixture": str(fixture.relative_to(ROOT)), "lerobot": lr, "vla_ros": ours}
        if lr.get("available") and ours.get("available"):
            row["speedup"] = lr["ms_median"] / ours["ms_median"]
            row["speedup_min"] = lr["ms_min"] / ours["ms_min"]  # the fastest call: least disturbed by other load
        results.append(row)
        print(json.dumps(row))
        for side, r in (("lerobot", lr), ("vla_ros", ours)):
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
