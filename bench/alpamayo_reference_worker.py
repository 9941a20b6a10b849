"""Times NVIDIA's own sampling entry point on a golden fixture's model (runs in the reference's
side venv, started by bench/alpamayo_reference.py; prints one JSON line).

--release alpamayo_r1 (default): NVlabs/alpamayo's `AlpamayoR1` on test/fixtures/alpamayo_r1_tiny;
--release alpamayo1_5: NVlabs/alpamayo1.5's `Alpamayo1_5` on test/fixtures/alpamayo1_5_tiny
(loaded with attn_implementation="sdpa", as its fixture generator reloads it; 3 cameras with ids
0, 1, 6 and the fixture's navigation text, guidance off as in its reference.safetensors case).
The model is the reference-saved `model/` directory, loaded with the reference's
`from_pretrained`; the hub ids of its base VLM resolve to the fixture's stand-in through symlinks
in a temporary working directory (as the fixture generators do). The prompt is tokenized outside
the timing (the reference's entry point takes tokenized data); each timed call is
`sample_trajectories_from_data_with_vlm_rollout` with the fixture's greedy settings after
`torch.manual_seed(run_seed)`, which draws the recorded start noise.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GENERATORS = REPO / "scripts" / "reference_fixtures"
# release -> (fixture, generator script, default reference source)
RELEASES = {
    "alpamayo_r1": ("alpamayo_r1_tiny", "alpamayo.py", "/work/.mirror/NVlabs+alpamayo/repo"),
    "alpamayo1_5": ("alpamayo1_5_tiny", "alpamayo1_5.py", "/work/.mirror/NVlabs+alpamayo1.5/repo"),
}


def load_reference(release: str, fixture: Path, gen, tmp: Path, meta: dict):
    """-> (the reference model, its processor, the messages for the fixture's images)."""
    from safetensors.torch import load_file

    cwd = tmp / "cwd"  # the hub ids, as relative paths, point at the fixture's stand-in here
    hub_ids = {gen.BASE_VLM_HUB_ID, getattr(gen, "PROCESSOR_HUB_ID", gen.BASE_VLM_HUB_ID)}
    for hub_id in hub_ids:
        (cwd / hub_id).parent.mkdir(parents=True, exist_ok=True)
        (cwd / hub_id).symlink_to(fixture / "base_vlm", target_is_directory=True)
    os.chdir(cwd)
    inputs = load_file(str(fixture / "inputs.safetensors"))
    if release == "alpamayo_r1":
        from transformers import AutoProcessor

        from alpamayo_r1 import helper
        from alpamayo_r1.models.alpamayo_r1 import AlpamayoR1

        model = AlpamayoR1.from_pretrained(str(fixture / "model")).eval()
        proc = AutoProcessor.from_pretrained(gen.BASE_VLM_HUB_ID, min_pixels=gen.MIN_PIXELS, max_pixels=gen.MAX_PIXELS)
        proc.tokenizer = model.tokenizer
        return model, proc, helper.create_message(inputs["images"])
    from alpamayo1_5 import helper
    from alpamayo1_5.models.alpamayo1_5 import Alpamayo1_5

    # Without the kwarg, 1.5's config turns from_pretrained's None into flash_attention_2 (CUDA only).
    model = Alpamayo1_5.from_pretrained(str(fixture / "model"), attn_implementation="sdpa").eval()
    helper.MIN_PIXELS, helper.MAX_PIXELS = gen.r1.MIN_PIXELS, gen.r1.MAX_PIXELS  # get_processor reads these
    proc = helper.get_processor(model.tokenizer)
    messages = helper.create_message(inputs["images"], camera_indices=inputs["camera_indices"],
                                     num_frames_per_camera=meta["shapes"]["num_frames"],
                                     nav_text=meta["cases"]["reference.safetensors"]["nav_text"])
    return model, proc, messages


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--release", choices=sorted(RELEASES), default="alpamayo_r1")
    ap.add_argument("--alpamayo-src", type=Path, default=None,
                    help="the reference's bare git dir or source tree (default: its /work/.mirror copy)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    fixture_name, script, default_src = RELEASES[args.release]
    fixture = REPO / "test" / "fixtures" / fixture_name
    meta = json.loads((fixture / "meta.json").read_text())
    sys.path.insert(0, str(GENERATORS))  # alpamayo1_5.py imports the R1 generator beside it
    spec = importlib.util.spec_from_file_location("gen", GENERATORS / script)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="alpamayo-bench-") as tmp:
        export = getattr(gen, "r1", gen).export_source
        kwargs = {} if args.release == "alpamayo_r1" else {"package": gen.PACKAGE, "repository": gen.REPOSITORY}
        src, commit = export(args.alpamayo_src or Path(default_src), meta["reference"]["commit"], Path(tmp), **kwargs)
        sys.path.insert(0, str(src / "src"))
        from safetensors.torch import load_file

        model, proc, messages = load_reference(args.release, fixture, gen, Path(tmp), meta)
        inputs = load_file(str(fixture / "inputs.safetensors"))
        ref = load_file(str(fixture / "reference.safetensors"))
        call = meta["call"]
        samples = call.get("num_traj_samples", meta.get("shapes", {}).get("samples", 2))
        times, diff = [], 0.0
        for _ in range(args.repeats + 1):  # the first call warms up
            tok = proc.apply_chat_template(messages, tokenize=True, add_generation_prompt=False,
                                           continue_final_message=True, return_dict=True, return_tensors="pt")
            data = {"tokenized_data": tok, "ego_history_xyz": inputs["ego_history_xyz"],
                    "ego_history_rot": inputs["ego_history_rot"]}
            torch.manual_seed(meta["run_seed"])
            t0 = time.perf_counter()
            with torch.no_grad():
                xyz, rot = model.sample_trajectories_from_data_with_vlm_rollout(
                    data=data, top_p=call["top_p"], top_k=call["top_k"], temperature=call["temperature"],
                    num_traj_samples=samples, max_generation_length=call["max_generation_length"])[:2]
            times.append((time.perf_counter() - t0) * 1e3)
            diff = max(diff, float((xyz - ref["pred_xyz"]).abs().max()), float((rot - ref["pred_rot"]).abs().max()))
    print(json.dumps({"impl": "reference", "release": args.release, "commit": commit, "torch": torch.__version__, "threads": args.threads,
                      "ms": times[1:], "warmup_ms": times[0], "max_abs_diff_vs_fixture": diff}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
