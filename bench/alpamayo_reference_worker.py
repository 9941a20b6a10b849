"""Times NVlabs/alpamayo's own sampling entry point on the golden fixture's model (runs in the
reference's side venv, started by bench/alpamayo_reference.py; prints one JSON line).

The model is the reference-saved `test/fixtures/alpamayo_r1_tiny/model`, loaded with the
reference's `AlpamayoR1.from_pretrained`; the hub id of its base VLM resolves to the fixture's
stand-in through a symlink in a temporary working directory (as the fixture generator does). The
prompt is tokenized once, outside the timing (the reference's entry point takes tokenized data);
each timed call is `sample_trajectories_from_data_with_vlm_rollout` with the fixture's greedy
settings after `torch.manual_seed(run_seed)`, which draws the recorded start noise.
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
FIXTURE = REPO / "test" / "fixtures" / "alpamayo_r1_tiny"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--alpamayo-src", type=Path, default=Path("/work/.mirror/NVlabs+alpamayo/repo"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    meta = json.loads((FIXTURE / "meta.json").read_text())
    spec = importlib.util.spec_from_file_location("gen", REPO / "scripts" / "reference_fixtures" / "alpamayo.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="alpamayo-bench-") as tmp:
        src, commit = gen.export_source(args.alpamayo_src, meta["reference"]["commit"], Path(tmp))
        sys.path.insert(0, str(src / "src"))
        from safetensors.torch import load_file
        from transformers import AutoProcessor

        from alpamayo_r1 import helper
        from alpamayo_r1.models.alpamayo_r1 import AlpamayoR1

        cwd = Path(tmp) / "cwd"
        (cwd / gen.BASE_VLM_HUB_ID).parent.mkdir(parents=True)
        (cwd / gen.BASE_VLM_HUB_ID).symlink_to(FIXTURE / "base_vlm", target_is_directory=True)
        os.chdir(cwd)
        model = AlpamayoR1.from_pretrained(str(FIXTURE / "model")).eval()
        proc = AutoProcessor.from_pretrained(gen.BASE_VLM_HUB_ID, min_pixels=gen.MIN_PIXELS, max_pixels=gen.MAX_PIXELS)
        proc.tokenizer = model.tokenizer
        inputs = load_file(str(FIXTURE / "inputs.safetensors"))
        ref = load_file(str(FIXTURE / "reference.safetensors"))
        messages = helper.create_message(inputs["images"])
        call = meta["call"]
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
                    num_traj_samples=call["num_traj_samples"], max_generation_length=call["max_generation_length"])[:2]
            times.append((time.perf_counter() - t0) * 1e3)
            diff = max(diff, float((xyz - ref["pred_xyz"]).abs().max()), float((rot - ref["pred_rot"]).abs().max()))
    print(json.dumps({"impl": "reference", "commit": commit, "torch": torch.__version__, "threads": args.threads,
                      "ms": times[1:], "warmup_ms": times[0], "max_abs_diff_vs_fixture": diff}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
