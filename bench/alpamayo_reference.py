#!/usr/bin/env python3
"""NVIDIA's reference code against vla_ros on the same Alpamayo-R1 checkpoint, inputs and noise.

The checkpoint is the golden fixture's reference-saved model (test/fixtures/alpamayo_r1_tiny/model:
2 text layers of 64, 16 images of 64x96 (4 cameras x 4 frames), 2 samples, a 12-token greedy
reasoning rollout that stops at <|traj_future_start|>, 10 flow steps). Per round:

- reference: bench/alpamayo_reference_worker.py in the reference's side venv (Python 3.12, torch
  2.8.0, transformers 4.57.1) times `AlpamayoR1.sample_trajectories_from_data_with_vlm_rollout`
  (prompt already tokenized and images already processed: that work is outside its timing);
- vla_ros: `Policy.act` on the same directory loaded with `--model` semantics (images, prompt,
  prefill, the same greedy rollout, 10 Euler steps, decoding: everything inside the timing),
  with the start noise the reference draws.

Both run on the CPU with the same thread count, one after the other, several rounds interleaved
(the machine may be shared). The ratio is median(reference) / median(vla_ros). Target (issue 18):
>= 3x. Raw JSON lines go to --out.

With --release alpamayo1_5 the same runs on Alpamayo 1.5's fixture (test/fixtures/alpamayo1_5_tiny:
12 images = 3 cameras with ids 0, 1, 6 x 4 frames, the navigation text in the prompt, guidance
off as in its reference.safetensors case) against NVlabs/alpamayo1.5's `Alpamayo1_5` (same side venv).

    .venv/bin/python bench/alpamayo_reference.py --out bench/results/alpamayo-ref-2026-12-04
    .venv/bin/python bench/alpamayo_reference.py --release alpamayo1_5 --out bench/results/alpamayo-ref-2026-12-04
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FIXTURES = {"alpamayo_r1": REPO / "test" / "fixtures" / "alpamayo_r1_tiny",
            "alpamayo1_5": REPO / "test" / "fixtures" / "alpamayo1_5_tiny"}


def side_python() -> Path:
    root = Path(os.environ.get("VLA_ROS_SIDEVENVS", REPO.parent / "sidevenvs"))
    return root / "alpamayo" / "bin" / "python"


def ours(release: str, repeats: int) -> dict:
    import numpy as np
    import torch
    from safetensors.torch import load_file

    from vla_ros.model.alpamayo_release import BASE_VLM_ENV, load_release
    from vla_ros.runtime.inputs import PolicyInputs
    from vla_ros.runtime.policy import Policy

    fixture = FIXTURES[release]
    os.environ[BASE_VLM_ENV] = str(fixture / "base_vlm")
    model, tok = load_release(fixture / "model")
    policy = Policy(model, tok, max_samples=2, max_reasoning_tokens=24)
    inputs = load_file(str(fixture / "inputs.safetensors"))
    ref = load_file(str(fixture / "reference.safetensors"))
    images = inputs["images"].permute(0, 2, 3, 1).numpy()
    extra = {}
    if release == "alpamayo1_5":  # cameras 0, 1, 6 x 4 frames, labelled, and the route in the prompt
        meta = json.loads((fixture / "meta.json").read_text())
        extra = {"camera_ids": tuple(inputs["camera_indices"].tolist()),
                 "task": meta["cases"]["reference.safetensors"]["nav_text"]}
    cameras = len(extra.get("camera_ids", range(4)))  # R1: 4 cameras x 4 frames
    stack = PolicyInputs(images=images.reshape(cameras, -1, *images.shape[1:]),
                         history_xyz=inputs["ego_history_xyz"][0, 0].double().numpy(),
                         history_rot=inputs["ego_history_rot"][0, 0].double().numpy(), **extra)
    times, out = [], None
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        out = policy.act(stack, reasoning=True, max_reasoning_tokens=24, noise=ref["noise"])
        times.append((time.perf_counter() - t0) * 1e3)
    diff = float(np.abs(out.xyz - ref["pred_xyz"][0, 0].double().numpy()).max())
    return {"impl": "vla_ros", "release": release, "torch": torch.__version__, "threads": torch.get_num_threads(), "ms": times[1:],
            "warmup_ms": times[0], "reasoning_tokens": out.timings.reasoning_tokens,
            "max_abs_xyz_diff_vs_fixture": diff, "stages_ms_last": out.timings.as_dict()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--release", choices=sorted(FIXTURES), default="alpamayo_r1",
                    help="which release's fixture and reference code (default alpamayo_r1)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per implementation per round")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both (default 1)")
    ap.add_argument("--python", type=Path, default=side_python(), help="the reference side venv's python")
    ap.add_argument("--out", type=Path, default=None, help="directory for the raw JSON lines")
    args = ap.parse_args()
    if not args.python.is_file():
        print(f"no reference side venv at {args.python}: run scripts/make_reference_fixtures alpamayo once "
              "(it creates it), or pass --python", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    lines = []
    for r in range(args.rounds):
        proc = subprocess.run([str(args.python), str(REPO / "bench" / "alpamayo_reference_worker.py"),
                               "--release", args.release, "--repeats", str(args.repeats),
                               "--threads", str(args.threads)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr[-4000:], file=sys.stderr)
            return 1
        ref = json.loads(proc.stdout.strip().splitlines()[-1])
        mine = ours(args.release, args.repeats)
        for rec in (ref, mine):
            rec["round"] = r
            lines.append(rec)
            print(json.dumps(rec))
    ref_ms = statistics.median(x for rec in lines if rec["impl"] == "reference" for x in rec["ms"])
    our_ms = statistics.median(x for rec in lines if rec["impl"] == "vla_ros" for x in rec["ms"])
    load = os.getloadavg()
    summary = {"summary": True, "release": args.release, "reference_median_ms": ref_ms, "vla_ros_median_ms": our_ms,
               "speedup": ref_ms / our_ms, "target": 3.0, "threads": args.threads, "loadavg": load}
    print(json.dumps(summary))
    print(f"{args.release}: reference {ref_ms:.1f} ms, vla_ros {our_ms:.1f} ms per call (median, {args.threads} thread(s), "
          f"load average {load[0]:.1f}): {ref_ms / our_ms:.2f}x  [{'MET' if ref_ms / our_ms >= 3 else 'MISSED'} >= 3x]")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        name = "alpamayo_reference" if args.release == "alpamayo_r1" else f"alpamayo_reference_{args.release}"
        (args.out / f"{name}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [*lines, summary]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
