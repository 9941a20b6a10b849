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


# ------------------------------------------------------------------------------------------------
# vla_ros side: NOT IMPLEMENTED YET. The joint_mot family (issue 19, item 1) that loads a LeRobot
# policy directory does not exist. When it does, this function loads `fixture` with `--model DIR`
# semantics, feeds the same raw inputs (reference.safetensors "input.*", reference.json "tasks")
# through its own processors, uses the recorded noise ("flow.noise"), times the whole chunk the same
# way (one warm-up, `repeats` timed calls), and returns the same fields as time_lerobot plus
# "max_abs_diff_vs_fixture" on the unnormalized actions ("output.actions").
# ------------------------------------------------------------------------------------------------
def time_vla_ros(fixture: Path, repeats: int, threads: int | None) -> dict:
    return {"available": False, "reason": "not implemented: vla_ros has no joint_mot (pi0/pi0.5) family yet"}


def main_full_size(args, variants: list[str]) -> list[dict]:
    """Real sizes (PaliGemma 3B + 300M expert), random weights, on --device: LeRobot's time as the anchor."""
    results = []
    for v in variants:
        lr = run_lerobot(lerobot_python(args.lerobot_python),
                         ["--time-full-size", v, "--device", args.device, "--repeats", str(args.repeats)])
        row = {"variant": v, "mode": "full-size", "lerobot": lr,
               "vla_ros": {"available": False, "reason": "not implemented: vla_ros has no joint_mot (pi0/pi0.5) family yet"}}
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
        results.append(row)
        print(json.dumps(row))
        for side, r in (("lerobot", lr), ("vla_ros", ours)):
            if r.get("available"):
                print(f"# {v} {side}: {r['ms_median']:.1f} ms median per chunk (batch {r['batch']}, "
                      f"{r['num_inference_steps']} steps, {r['threads']} threads), max abs diff vs fixture "
                      f"{r['max_abs_diff_vs_fixture']:.2e}", file=sys.stderr)
            else:
                print(f"# {v} {side}: {r['reason']}", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
