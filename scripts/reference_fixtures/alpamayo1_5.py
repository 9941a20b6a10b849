"""Golden fixture from NVIDIA's own Alpamayo 1.5 reference code (NVlabs/alpamayo1.5, src/alpamayo1_5).

Run through the dispatcher. Alpamayo 1.5 pins what Alpamayo-R1 pins (Python 3.12, torch==2.8.0,
transformers==4.57.1), so its `alpamayo1_5` recipe shares the `alpamayo` side venv
(/work/sidevenvs/alpamayo unless VLA_ROS_SIDEVENVS says otherwise: Python 3.12, torch==2.8.0,
torchvision==0.23.0, transformers==4.57.1, hydra-core, omegaconf, einops, safetensors, scipy,
colorlog, numpy; made on first use by `scripts/make_reference_fixtures --venv alpamayo1_5`):

    scripts/make_reference_fixtures alpamayo1_5 [--alpamayo-src DIR] [--commit REV] [--out DIR]

The reference source comes from the `fetch` tool (github:NVlabs/alpamayo1.5 -> a bare git dir,
/work/.mirror/NVlabs+alpamayo1.5/repo, the default --alpamayo-src); meta.json records the commit.
Everything the two releases share (stand-in base VLM, source export, ego history, flow
conditioning, recording hooks, output tensors, sha256) is imported from alpamayo.py, the R1
generator; this file holds what 1.5 does differently.

What it does, all offline (HF_HUB_OFFLINE=1, TRANSFORMERS_OFFLINE=1), on one CPU thread:

1. Exports src/alpamayo1_5 at one commit (as alpamayo.py does for R1).
2. Writes the tiny stand-in base VLM of alpamayo.py (Qwen3-VL config, byte-level BPE, ChatML
   template) into OUT/base_vlm, its BPE trained on a corpus that also holds the camera names,
   "frame k" and navigation phrases, so merges across the prompt's text pieces occur. Both hub ids
   the reference reads resolve to it: "Qwen/Qwen3-VL-8B-Instruct" (the ReasoningVLAConfig default
   vlm_name_or_path, kept in config.json) and "Qwen/Qwen3-VL-2B-Instruct" (helper.get_processor).
3. Builds the reference's own `Alpamayo1_5` from a shrunken `Alpamayo1_5Config` (the R1 fixture's
   sizes and sub-config classes under `alpamayo1_5.` targets; action statistics unlike R1's, which
   1.5 keeps in non-persistent buffers, so they reach a loader only through config.json;
   `diffusion_cfg.inference_guidance_weight` 1.5, as the reference's nav notebook uses;
   include_camera_ids / include_frame_nums True) with seeded random weights, rescales the
   action-feature columns of `action_in_proj.encoder.trunk.0.weight` by 0.1 (see alpamayo.py's
   ACTION_FEATURE_INPUT_SCALE), and saves it with its own `save_pretrained` into OUT/model, plus
   `helper.get_processor(model.tokenizer)` (the reference's processor with the expanded tokenizer;
   helper.MIN_PIXELS / MAX_PIXELS set to the fixture's 64*64 / 64*96 for the call).
4. Runs, on 12 images of 64x96 (3 cameras with indices [0, 1, 6] x 4 frames, camera-major, as
   `load_physical_aiavdataset` sorts them) and a 16-pose ego history, greedy (top_k=1), 2 samples,
   messages from `helper.create_message(frames, camera_indices, 4, nav_text)`:
   - `sample_trajectories_from_data_with_vlm_rollout` with nav_text NAV_TEXT -> reference.safetensors
   - the same without nav text (camera ids kept)                          -> reference_no_nav.safetensors
   - `sample_trajectories_from_data_with_vlm_rollout_cfg_nav` with NAV_TEXT and
     diffusion_kwargs {"use_classifier_free_guidance": True} (weight from config) -> reference_cfg_nav.safetensors
   - the first with diffusion_kwargs {"temperature": 0.0} (the sampler's own start-noise scale: zero
     start noise) and 1 sample                                             -> reference_zero_noise.safetensors
   - the zero-noise case with max_generation_length the length of its greedy rollout, so
     <|traj_future_start|> is sampled in the budget's last slot: generate never runs a forward for
     that token, so the cache lacks its key while the expert's positions continue after it
                                                                           -> reference_budget_at_stop.safetensors
   - the same through the cfg entry point (its unguided branch is still fed every generated token,
     the last one too)                                                     -> reference_cfg_nav_budget_at_stop.safetensors
   The weight seed is the first from --seed whose greedy rollouts, with and without nav text, reach
   <|traj_future_start|> after >= 3 tokens. Every case must be well conditioned: one float32 ulp of
   start noise may move the final action by at most 1e-5 (the reference's own step function; for
   cfg its own `_guided_v`).
5. Reloads OUT/model with `Alpamayo1_5.from_pretrained(dir, attn_implementation="sdpa")` (without the
   kwarg, 1.5's config turns the None that from_pretrained passes into flash_attention_2) and re-runs
   every case with the same seeds: same tokens, same start noise, trajectories within 1e-5 (they are
   bit-identical; meta.json `reload_check`). Two runs write byte-identical files (about 45 s).

Files (safetensors + json, no pickles):
- OUT/base_vlm/: the stand-in (config, tokenizer, chat template, processor settings; no weights).
- OUT/model/: config.json + model.safetensors (no action statistics, no Fourier `freqs`: both are
  non-persistent in 1.5) + the processor files with the expanded tokenizer.
- OUT/inputs.safetensors: images (12, 3, 64, 96) uint8, camera_indices (3,), ego_history_xyz
  (1, 1, 16, 3), ego_history_rot (1, 1, 16, 3, 3), pixel_values, image_grid_thw (the same for
  every case).
- OUT/reference*.safetensors: per case the prompt (prompt_input_ids as templated, input_ids with
  the history fused in, attention_mask), the rollout (sequences_raw, sequences, generate_logits,
  rope_deltas, cache_len, prefix_len), the expert's position ids and visible keys, noise, every
  Euler step's x / t / v, action, action_in_proj output at step 0, v0, within_bounds, pred_xyz,
  pred_rot; the cfg case also the unguided side (unguided_input_ids, unguided_cache_len,
  unguided_prefix_len, unguided_rope_deltas, unguided_expert_position_ids,
  unguided_expert_visible_keys) and per step flow_v_guided / flow_v_unguided, with flow_v the
  reference's (1 - w) * unguided + w * guided.
- OUT/prompts.safetensors: prompt ids only (no model call) for other camera sets, PROMPT_CASES:
  NAME/prompt_input_ids as templated and NAME/input_ids with the history fused in.
- OUT/meta.json: commit, versions, seeds, call arguments, token ids, the exact prompt text per
  case and the user message's content items, how piecewise tokenization differs from the whole
  prompt's, decoded reasoning, conditioning, reload check, sha256 of every file.
"""
from __future__ import annotations

import copy
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import torch

import alpamayo as r1  # the R1 generator beside this file (sets the offline environment)

REPO_ROOT = r1.REPO_ROOT
DEFAULT_SRC = Path("/work/.mirror/NVlabs+alpamayo1.5/repo")
DEFAULT_OUT = REPO_ROOT / "test" / "fixtures" / "alpamayo1_5_tiny"
PACKAGE = "alpamayo1_5"
REPOSITORY = "NVlabs/alpamayo1.5"
# Hub ids the reference reads: the config default (ReasoningVLAConfig.vlm_name_or_path, which the
# saved config.json keeps, as the release's does) and helper.BASE_PROCESSOR_NAME.
BASE_VLM_HUB_ID = r1.BASE_VLM_HUB_ID  # "Qwen/Qwen3-VL-8B-Instruct", checked against the source below
PROCESSOR_HUB_ID = "Qwen/Qwen3-VL-2B-Instruct"

CAMERA_INDICES = [0, 1, 6]  # front left, front, front telephoto: non-consecutive, sorted as the loader sorts
NUM_FRAMES = 4
NUM_IMAGES = len(CAMERA_INDICES) * NUM_FRAMES
NAV_TEXT = "Turn left onto Main Street in 40m"
# Prompt-only cases (prompts.safetensors): camera sets beyond the run's, (indices, nav text).
PROMPT_CASES = {
    "cameras_0_1_2_6": ([0, 1, 2, 6], NAV_TEXT),  # vla_ros's default camera ids
    "cameras_2_3_4_5_no_nav": ([2, 3, 4, 5], None),  # the names of the rear cameras
    "cameras_1_9": ([1, 9], "Turn right in 30m"),  # an index past the named ones: "Camera 9"
}
GUIDANCE_WEIGHT = 1.5  # FlowMatching.inference_guidance_weight in the saved config (the nav notebook's value)
# Action statistics, unlike R1's fixture values so a loader that falls back on R1's defaults fails.
ACTION_STATS = {"accel_mean": -0.12, "accel_std": 1.1, "curvature_mean": 0.0021, "curvature_std": 0.04}
TOKENIZER_VOCAB = 480
TOKENIZER_CORPUS = r1.TOKENIZER_CORPUS + [
    "Front left camera: frame 0 frame 1 frame 2 frame 3. Front camera: frame 0 frame 1 frame 2 frame 3.",
    "Front right camera: frame 0 frame 1. Front telephoto camera: frame 2 frame 3. Rear camera: frame 0.",
    "Turn left onto Main Street in 40m. Turn right in 30m. Continue straight onto the highway ramp.",
]


def log(msg: str) -> None:
    print(f"[alpamayo1_5-fixture] {msg}", flush=True)


def config_kwargs() -> dict:
    """The R1 fixture's shrunken config under `alpamayo1_5.` targets, with 1.5's additions."""
    def retarget(node):
        if isinstance(node, dict):
            return {k: retarget(v) for k, v in node.items()}
        if isinstance(node, str) and node.startswith("alpamayo_r1."):
            return PACKAGE + node[len("alpamayo_r1"):]
        return node

    kw = retarget(copy.deepcopy(r1.alpamayo_config_kwargs()))
    kw["action_space_cfg"].update(ACTION_STATS)
    kw["traj_tokenizer_cfg"]["action_space_cfg"].update(ACTION_STATS)
    kw["diffusion_cfg"].update(inference_guidance_weight=GUIDANCE_WEIGHT, use_classifier_free_guidance=False)
    kw["include_camera_ids"] = True
    kw["include_frame_nums"] = True
    return kw


class CfgRecorder(r1.Recorder):
    """The R1 recorder, plus both step functions of the guided sampler and the unguided prefix."""

    def _sample(self, batch_size, step_fn, unguided_step_fn=None, device=None, return_all_steps=False, **kwargs):
        diffusion = self.model.diffusion
        weight = kwargs.get("inference_guidance_weight")
        weight = diffusion.inference_guidance_weight if weight is None else weight
        self.data["guidance_weight"] = float(weight)
        for side, fn in (("guided", step_fn), ("unguided", unguided_step_fn)):
            kw = fn.keywords  # functools.partial(step_fn, past_key_values, attention_mask, position_ids)
            self.data[f"{side}_cache_len"] = kw["past_key_values"].get_seq_length()
            self.data[f"{side}_expert_position_ids"] = kw["position_ids"].clone()
            self.data[f"{side}_expert_visible_keys"] = (kw["attention_mask"][:, 0, 0, :] == 0).to(torch.uint8)
        self.data["unguided_rope_deltas"] = self.model.vlm.model.rope_deltas.clone()  # left by the unguided pass
        guided_v, unguided_v = [], []

        def guided(x, t):
            v = step_fn(x=x, t=t)
            guided_v.append(v.clone())
            return v

        def unguided(x, t):
            v = unguided_step_fn(x=x, t=t)
            unguided_v.append(v.clone())
            return v

        combine = diffusion._guided_v  # the reference's staticmethod

        def recording_guided_v(**kw):
            v = combine(**kw)
            self.steps.append((kw["x"].clone(), kw["t"].clone(), v.clone()))
            return v

        diffusion._guided_v = recording_guided_v  # an instance attribute shadows the staticmethod
        try:
            x = self._orig_sample(batch_size=batch_size, step_fn=guided, unguided_step_fn=unguided, device=device,
                                  return_all_steps=return_all_steps, **kwargs)
        finally:
            del diffusion._guided_v
        if not kwargs.get("use_classifier_free_guidance", diffusion.use_classifier_free_guidance):
            raise SystemExit("the cfg case ran without classifier-free guidance")
        self.data["action"] = x.clone()
        self.data["flow_v_guided"] = torch.stack(guided_v)
        self.data["flow_v_unguided"] = torch.stack(unguided_v)
        self.data["ulp_effect"] = self._ulp_effect(lambda x, t: combine(
            step_fn=step_fn, x=x, t=t, unguided_step_fn=unguided_step_fn, inference_guidance_weight=weight))
        return x


def messages_for(nav_text: str | None, camera_indices: list[int] = CAMERA_INDICES):
    from alpamayo1_5 import helper
    return lambda images: helper.create_message(images, camera_indices=torch.tensor(camera_indices),
                                                num_frames_per_camera=NUM_FRAMES, nav_text=nav_text)


def prompt_cases(model, processor, images: torch.Tensor, xyz: torch.Tensor, rot: torch.Tensor) -> dict[str, torch.Tensor]:
    """The reference's prompt ids for the camera sets of PROMPT_CASES: the processor's output
    (`NAME/prompt_input_ids`) and with the model's `fuse_traj_tokens` of the fixture's history
    (`NAME/input_ids`, what it prefills). Each set's images are the fixture's, repeated as needed;
    only their size counts here."""
    out = {}
    for name, (indices, nav_text) in PROMPT_CASES.items():
        n = len(indices) * NUM_FRAMES
        frames = images.repeat((n + len(images) - 1) // len(images), 1, 1, 1)[:n]
        tokenized = processor.apply_chat_template(messages_for(nav_text, indices)(frames), tokenize=True,
                                                  add_generation_prompt=False, continue_final_message=True,
                                                  return_dict=True, return_tensors="pt")
        out[f"{name}/prompt_input_ids"] = tokenized["input_ids"].contiguous()
        fused = model.fuse_traj_tokens(tokenized["input_ids"], {"ego_history_xyz": xyz, "ego_history_rot": rot})
        out[f"{name}/input_ids"] = fused.contiguous()
    return out


def run_case(model, processor, inputs: dict, nav_text: str | None, samples: int, max_len: int, seed: int,
             cfg: bool = False, diffusion_kwargs: dict | None = None) -> dict:
    """One reference call on the fixture's inputs, recorded."""
    messages = messages_for(nav_text)(inputs["images"])
    tokenized = processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=False,
                                              continue_final_message=True, return_dict=True, return_tensors="pt")
    prompt_text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False,
                                                continue_final_message=True)
    tokenized_copy = {k: v.clone() for k, v in tokenized.items()}
    data = {"tokenized_data": tokenized, "ego_history_xyz": inputs["ego_history_xyz"],
            "ego_history_rot": inputs["ego_history_rot"]}
    rec = (CfgRecorder if cfg else r1.Recorder)(model)
    entry = (model.sample_trajectories_from_data_with_vlm_rollout_cfg_nav if cfg
             else model.sample_trajectories_from_data_with_vlm_rollout)
    try:
        torch.manual_seed(seed)
        with torch.no_grad():
            pred_xyz, pred_rot, extra = entry(data=data, top_p=0.98, top_k=1, temperature=0.6,
                                              num_traj_samples=samples, max_generation_length=max_len,
                                              return_extra=True, diffusion_kwargs=diffusion_kwargs)
    finally:
        rec.close()
    return {"result": (pred_xyz, pred_rot, extra, rec, tokenized_copy, prompt_text), "messages": messages,
            "samples": samples, "nav_text": nav_text, "cfg": cfg, "diffusion_kwargs": diffusion_kwargs or {}}


def stops(case: dict, eos: int) -> tuple[bool, int]:
    """(every sample reaches <|traj_future_start|> after >= 3 tokens, first one's reasoning length)."""
    _, _, _, rec, tokenized, _ = case["result"]
    gen = rec.data["sequences_raw"][:, tokenized["input_ids"].shape[1]:]
    first = (gen == eos).int().argmax(dim=1)
    return bool((gen == eos).any(dim=1).all()) and int(first.min()) >= 3, int(first[0]) + 1


def case_tensors(model, case: dict, eos: int, xyz, rot) -> dict:
    """R1's output tensors + the case's own prompt (+ the unguided side for cfg)."""
    _, _, _, rec, tokenized, _ = case["result"]
    d = rec.data
    out = r1.outputs_of(model, case["result"], eos, xyz, rot, case["samples"], package=PACKAGE)
    out.update({
        "prompt_input_ids": tokenized["input_ids"].contiguous(),  # (1, L) chat template output, placeholders unfused
        "attention_mask": tokenized["attention_mask"].contiguous(),
        "input_ids": d["input_ids"].contiguous(),  # (1, L) with the 48 history tokens fused in
    })
    if case["cfg"]:
        from alpamayo1_5.nav_utils import remove_nav_text
        unguided = remove_nav_text(d["input_ids"], model.tokenizer, 0)  # what the reference prefills
        gen_len = d["sequences_raw"].shape[1] - d["input_ids"].shape[1]
        full = torch.cat([unguided.expand(case["samples"], -1),
                          out["sequences"][:, d["input_ids"].shape[1]:]], dim=1)
        hit = full == eos
        prefix = torch.where(hit.any(1), hit.int().argmax(1) + 1, torch.full_like(hit[:, 0], full.shape[1], dtype=torch.long))
        if d["unguided_cache_len"] != unguided.shape[1] + gen_len:
            raise SystemExit(f"unguided cache holds {d['unguided_cache_len']} tokens, expected the unguided "
                             f"prompt {unguided.shape[1]} + all {gen_len} generated")
        if not torch.equal(d["guided_expert_position_ids"], d["expert_position_ids"]):
            raise SystemExit("the expert's first call did not use the guided position ids")
        out.update({
            "guidance_weight": torch.tensor(d["guidance_weight"]),
            "flow_v_guided": d["flow_v_guided"].contiguous(),  # (steps, B*, 64, 2) step_fn (with the route span)
            "flow_v_unguided": d["flow_v_unguided"].contiguous(),  # (steps, B*, 64, 2) unguided_step_fn
            "unguided_input_ids": unguided.contiguous(),  # (1, L - route span) fused ids without <|route_start|>..<|route_end|>
            "unguided_sequences": full.contiguous(),  # (B*, L' + gen) the unguided prompt + generated (padded) tokens
            "unguided_cache_len": torch.tensor(d["unguided_cache_len"]),  # L' + every generated token
            "unguided_prefix_len": prefix.contiguous(),  # (B*,) through <|traj_future_start|> in unguided_sequences
            "unguided_rope_deltas": d["unguided_rope_deltas"].contiguous(),  # (1, 1) of the unguided prefill
            "unguided_expert_position_ids": d["unguided_expert_position_ids"].contiguous(),  # (3, B*, 64)
            "unguided_expert_visible_keys": d["unguided_expert_visible_keys"].contiguous(),  # (B*, cache' + 64)
        })
    return out


def content_items(messages) -> list[str]:
    """The user message's content as the chat template concatenates it ("<image>" for an image item)."""
    return [item["text"] if item["type"] == "text" else "<image>" for item in messages[1]["content"]]


def piecewise_tokenization(tokenizer, items: list[str]) -> dict:
    """Does tokenizing the text items one by one give the ids of the concatenated text? (BPE merges
    across item boundaries: the chat template joins the items with nothing in between.)"""
    runs, run = [], []  # consecutive text items, joined with nothing between them
    for item in items + ["<image>"]:
        if item != "<image>":
            run.append(item)
        elif run:
            runs.append(("".join(run), run))
            run = []
    diffs = []
    for whole, pieces in runs:
        ids_whole = tokenizer(whole, add_special_tokens=False)["input_ids"]
        ids_pieces = [i for p in pieces for i in tokenizer(p, add_special_tokens=False)["input_ids"]]
        if ids_whole != ids_pieces:
            diffs.append({"text": whole, "items": pieces,
                          "tokens_whole": tokenizer.convert_ids_to_tokens(ids_whole),
                          "tokens_items_one_by_one": tokenizer.convert_ids_to_tokens(ids_pieces)})
    return {"same": not diffs, "differing_runs": diffs[:3],
            "rule": "render the whole prompt with the chat template, then tokenize it as one string "
                    "(special tokens split first); tokenizing the text items one by one gives other ids"}


def main() -> int:
    ap = r1.generator_arguments(__doc__, "NVlabs/alpamayo1.5", DEFAULT_SRC, DEFAULT_OUT, 200,
                                "the greedy rollouts with and without nav text end with <|traj_future_start|>")
    args = ap.parse_args()
    if sys.version_info[:2] != (3, 12):
        log(f"warning: the reference requires Python 3.12, this is {platform.python_version()}")

    with tempfile.TemporaryDirectory(prefix="alpamayo1_5-fixture-") as tmp:
        tmpdir = Path(tmp)
        src_root, commit = r1.export_source(args.alpamayo_src, args.commit, tmpdir, package=PACKAGE,
                                            repository=REPOSITORY)
        sys.path.insert(0, str(src_root / "src"))
        log(f"reference {REPOSITORY} @ {commit} from {args.alpamayo_src}")

        from safetensors.torch import save_file

        from alpamayo1_5 import helper
        from alpamayo1_5.config import Alpamayo1_5Config
        from alpamayo1_5.models.alpamayo1_5 import Alpamayo1_5
        from alpamayo1_5.models.base_model import SPECIAL_TOKENS_KEYS, ReasoningVLAConfig
        from alpamayo1_5.models.token_utils import to_special_token

        import inspect
        default_vlm = inspect.signature(ReasoningVLAConfig.__init__).parameters["vlm_name_or_path"].default
        if default_vlm != BASE_VLM_HUB_ID or helper.BASE_PROCESSOR_NAME != PROCESSOR_HUB_ID:
            raise SystemExit(f"the reference's hub ids changed ({default_vlm}, {helper.BASE_PROCESSOR_NAME}): "
                             "update BASE_VLM_HUB_ID / PROCESSOR_HUB_ID")
        helper.MIN_PIXELS, helper.MAX_PIXELS = r1.MIN_PIXELS, r1.MAX_PIXELS  # get_processor reads these

        torch.set_num_threads(1)  # one thread: a reproducible summation order
        torch.use_deterministic_algorithms(True)
        stage = tmpdir / "out"
        stage.mkdir()
        base = r1.make_base_vlm(stage / r1.BASE_VLM_DIR, corpus=TOKENIZER_CORPUS, vocab_size=TOKENIZER_VOCAB)
        cwd = tmpdir / "cwd"  # the hub ids, as relative paths, point at the stand-in here
        for hub_id in (BASE_VLM_HUB_ID, PROCESSOR_HUB_ID):
            (cwd / hub_id).parent.mkdir(parents=True, exist_ok=True)
            (cwd / hub_id).symlink_to(stage / r1.BASE_VLM_DIR, target_is_directory=True)
        os.chdir(cwd)
        log(f"stand-in base VLM: vocab {base['base_vocab_size']}")

        xyz, rot = r1.ego_history()
        gen = torch.Generator().manual_seed(1234)
        images = torch.randint(0, 256, (NUM_IMAGES, 3, *r1.IMAGE_HW), dtype=torch.uint8, generator=gen)
        inputs = {"images": images, "ego_history_xyz": xyz, "ego_history_rot": rot}
        kwargs = config_kwargs()
        run_seed, n, max_len = 7, args.samples, args.max_generation_length

        def all_cases(model, processor, stop_len: int) -> dict:
            return {
                "reference.safetensors": run_case(model, processor, inputs, NAV_TEXT, n, max_len, run_seed),
                "reference_no_nav.safetensors": run_case(model, processor, inputs, None, n, max_len, run_seed),
                "reference_cfg_nav.safetensors": run_case(model, processor, inputs, NAV_TEXT, n, max_len, run_seed,
                                                          cfg=True, diffusion_kwargs={"use_classifier_free_guidance": True}),
                "reference_zero_noise.safetensors": run_case(model, processor, inputs, NAV_TEXT, 1, max_len, run_seed,
                                                             diffusion_kwargs={"temperature": 0.0}),
                # zero start noise: fewer tokens sampled leave the global generator elsewhere for the noise
                "reference_budget_at_stop.safetensors": run_case(model, processor, inputs, NAV_TEXT, 1, stop_len,
                                                                 run_seed, diffusion_kwargs={"temperature": 0.0}),
                "reference_cfg_nav_budget_at_stop.safetensors": run_case(
                    model, processor, inputs, NAV_TEXT, 1, stop_len, run_seed, cfg=True,
                    diffusion_kwargs={"use_classifier_free_guidance": True, "temperature": 0.0}),
            }

        chosen = None
        for seed in range(args.seed, args.seed + args.max_seeds):
            torch.manual_seed(seed)
            model = Alpamayo1_5(Alpamayo1_5Config(**kwargs)).eval()
            rescaled = r1.condition_flow(model)
            processor = helper.get_processor(model.tokenizer)
            eos = model.tokenizer.convert_tokens_to_ids(to_special_token("traj_future_start"))
            nav = run_case(model, processor, inputs, NAV_TEXT, n, max_len, run_seed)
            no_nav = run_case(model, processor, inputs, None, n, max_len, run_seed)
            (ok_nav, len_nav), (ok_no, len_no) = stops(nav, eos), stops(no_nav, eos)
            if ok_nav and ok_no:
                chosen = seed
                break
        if chosen is None:
            raise SystemExit(f"no weight seed in [{args.seed}, {args.seed + args.max_seeds}) gave rollouts that end "
                             "with <|traj_future_start|>; raise --max-seeds or --max-generation-length")
        log(f"weight seed {chosen}: reasoning of {len_nav} tokens with nav text, {len_no} without")
        cases = all_cases(model, processor, len_nav)
        for name, case in cases.items():
            ulp = case["result"][3].data["ulp_effect"]
            if ulp > r1.MAX_ULP_EFFECT:
                raise SystemExit(f"{name}: the flow is ill-conditioned (one ulp of start noise moves the final "
                                 f"action by {ulp:.2e} > {r1.MAX_ULP_EFFECT})")
            log(f"{name}: one ulp of start noise moves the final action by {ulp:.2e}")
        nav_seq = cases["reference.safetensors"]["result"][3].data["sequences_raw"]
        for name in ("reference_cfg_nav.safetensors", "reference_zero_noise.safetensors"):
            if not torch.equal(cases[name]["result"][3].data["sequences_raw"][0], nav_seq[0]):
                raise SystemExit(f"{name}: the greedy rollout differs from reference.safetensors'")
        if not (cases["reference_zero_noise.safetensors"]["result"][3].steps[0][0] == 0).all():
            raise SystemExit("temperature 0 did not give zero start noise")
        for name in ("reference_budget_at_stop.safetensors", "reference_cfg_nav_budget_at_stop.safetensors"):
            at_stop = cases[name]["result"]
            prompt_len = at_stop[4]["input_ids"].shape[1]
            seq = at_stop[3].data["sequences_raw"]
            if not (torch.equal(seq, nav_seq[:1, :seq.shape[1]]) and seq.shape[1] == prompt_len + len_nav
                    and bool((seq[:, -1] == eos).all()) and at_stop[3].data["cache_len"] == seq.shape[1] - 1
                    and not at_stop[3].steps[0][0].any()):
                raise SystemExit(f"{name}: expected reference_zero_noise.safetensors' rollout and zero noise with "
                                 "<|traj_future_start|> in the last slot and a cache without its key")

        model_dir = stage / "model"
        model.save_pretrained(model_dir, safe_serialization=True)
        processor.save_pretrained(model_dir)

        # Reload as a user of the reference code would; same seeds, so the same noise and tokens.
        # attn_implementation must be passed: transformers' from_dict replaces config.json's value with this
        # kwarg (None by default), which Alpamayo1_5Config turns into flash_attention_2 (CUDA + flash-attn only).
        reloaded = Alpamayo1_5.from_pretrained(str(model_dir), attn_implementation="sdpa").eval()
        reloaded_cases = all_cases(reloaded, helper.get_processor(reloaded.tokenizer), len_nav)
        reload_check = {}
        for name, case in cases.items():
            a, b = case["result"], reloaded_cases[name]["result"]
            diff = float(max((a[0] - b[0]).abs().max(), (a[1] - b[1]).abs().max()))
            same = bool(torch.equal(a[3].data["sequences_raw"], b[3].data["sequences_raw"]))
            if diff > 1e-5 or not same or not torch.equal(a[3].steps[0][0], b[3].steps[0][0]):
                raise SystemExit(f"{name}: the reloaded reference model differs (xyz/rot {diff}, same tokens {same})")
            reload_check[name] = {"max_abs_xyz_rot_diff": diff, "same_reasoning_tokens": same}
        log(f"reload check: {reload_check}")

        tensors = {name: case_tensors(model, case, eos, xyz, rot) for name, case in cases.items()}
        tok_nav = cases["reference.safetensors"]["result"][4]
        for name, case in cases.items():
            t = case["result"][4]
            if not (torch.equal(t["pixel_values"], tok_nav["pixel_values"])
                    and torch.equal(t["image_grid_thw"], tok_nav["image_grid_thw"])):
                raise SystemExit(f"{name}: pixel_values differ between cases")
        save_file({"images": images.contiguous(), "camera_indices": torch.tensor(CAMERA_INDICES),
                   "ego_history_xyz": xyz.contiguous(), "ego_history_rot": rot.contiguous(),
                   "pixel_values": tok_nav["pixel_values"].contiguous(),
                   "image_grid_thw": tok_nav["image_grid_thw"].contiguous()}, str(stage / "inputs.safetensors"))
        for name, out in tensors.items():
            save_file(out, str(stage / name))
        save_file(prompt_cases(model, processor, images, xyz, rot), str(stage / "prompts.safetensors"))

        tok = model.tokenizer
        special = {k: int(tok.convert_tokens_to_ids(to_special_token(k))) for k in SPECIAL_TOKENS_KEYS}
        meta = {
            "what": "Golden fixture from NVlabs/alpamayo1.5's own Alpamayo1_5 (random weights, shrunken config). "
                    "Made by scripts/make_reference_fixtures alpamayo1_5; see that script for the exact setup.",
            "reference": {"repository": REPOSITORY, "commit": commit, "package": f"src/{PACKAGE}"},
            "python": platform.python_version(), "packages": r1.package_versions(),
            "torch_threads": 1, "deterministic": True,
            "weight_seed": chosen, "run_seed": run_seed, "image_seed": 1234,
            "weight_rescale": rescaled,
            "call": {"top_p": 0.98, "top_k": 1, "temperature": 0.6, "num_traj_sets": 1,
                     "max_generation_length": max_len, "return_extra": True,
                     "greedy": "top_k=1: every sampled token is the argmax of the masked logits",
                     "messages": "helper.create_message(images, camera_indices=camera_indices, "
                                 "num_frames_per_camera=4, nav_text=...)",
                     "processor": "helper.get_processor(model.tokenizer) with helper.MIN_PIXELS/MAX_PIXELS set to "
                                  f"{r1.MIN_PIXELS}/{r1.MAX_PIXELS} (the release's helper hard-codes 163840/196608); "
                                  "apply_chat_template(add_generation_prompt=False, continue_final_message=True)"},
            "base_vlm": {"dir": r1.BASE_VLM_DIR, "vlm_name_or_path": BASE_VLM_HUB_ID,
                         "processor_hub_id": PROCESSOR_HUB_ID,
                         "note": "model/config.json names the config's default hub id; in this fixture both hub ids "
                                 "the reference reads stand for the tiny stand-in in base_vlm/ (no weights: the VLM "
                                 "is built from its config and its weights are in model/model.safetensors)", **base},
            "tokens": {"traj_token_start_idx": int(model.config.traj_token_start_idx),
                       "future_token_start_idx": int(model.future_token_start_idx),
                       "hist_token_start_idx": int(model.hist_token_start_idx),
                       "traj_vocab_size": int(model.config.traj_vocab_size),
                       "vocab_size": int(model.config.vocab_size), "pad_token_id": int(tok.pad_token_id),
                       "traj_token_ids": {k: int(v) for k, v in model.config.traj_token_ids.items()},
                       "special_tokens_keys": list(SPECIAL_TOKENS_KEYS), "special": special},
            "shapes": {"n_waypoints": r1.N_WAYPOINTS, "flow_steps": r1.FLOW_STEPS, "samples": n,
                       "camera_indices": CAMERA_INDICES, "num_cameras": len(CAMERA_INDICES),
                       "num_frames": NUM_FRAMES, "image_hw": list(r1.IMAGE_HW)},
            "nav_text": NAV_TEXT,
            "prompt_cases": {name: {"camera_indices": ids, "nav_text": nav, "file": "prompts.safetensors",
                                    "keys": [f"{name}/input_ids", f"{name}/prompt_input_ids"],
                                    "what": "helper.create_message for these cameras (the fixture's images "
                                            "repeated), processed as above; input_ids with the history fused in"}
                             for name, (ids, nav) in PROMPT_CASES.items()},
            "action_stats": ACTION_STATS,
            "cases": {},
            "flow": {"direction": "noise_to_data: x starts as temperature * N(0, 1) noise at t=0; x += (t[i+1] - t[i]) * v",
                     "t_grid": torch.linspace(0.0, 1.0, r1.FLOW_STEPS + 1).tolist(),
                     "guidance": "cfg case: v = (1 - w) * unguided_step_fn(x, t) + w * step_fn(x, t) "
                                 "(FlowMatching._guided_v), w = diffusion_cfg.inference_guidance_weight",
                     "ulp_effect_max": r1.MAX_ULP_EFFECT},
            "reload_check": {"call": 'Alpamayo1_5.from_pretrained(model_dir, attn_implementation="sdpa")',
                             "why_sdpa_is_passed": "from_pretrained replaces config.json's attn_implementation with "
                                                   "its own kwarg (None unless given), which Alpamayo1_5Config turns "
                                                   "into flash_attention_2",
                             **reload_check},
            "files": {},
        }
        for name, case in cases.items():
            _, _, extra, rec, tokenized, prompt_text = case["result"]
            d = rec.data
            prompt_len = tokenized["input_ids"].shape[1]
            items = content_items(case["messages"])
            entry = {
                "entry_point": "Alpamayo1_5." + ("sample_trajectories_from_data_with_vlm_rollout_cfg_nav" if case["cfg"]
                                                  else "sample_trajectories_from_data_with_vlm_rollout"),
                "nav_text": case["nav_text"], "num_traj_samples": case["samples"],
                "diffusion_kwargs": case["diffusion_kwargs"], "prompt_len": int(prompt_len),
                "cache_len": int(d["cache_len"]), "stops_at_traj_future_start": True,
                "ulp_effect": d["ulp_effect"],
                "prompt_text": prompt_text,
                "user_content_items": items,
                "piecewise_tokenization": piecewise_tokenization(processor.tokenizer, items),
                "generated_text": tok.batch_decode(d["sequences_raw"][:, prompt_len:], skip_special_tokens=False),
                "cot": [str(c) for c in extra["cot"].reshape(-1)],
            }
            if case["cfg"]:
                entry["guidance_weight"] = d["guidance_weight"]
                entry["unguided_cache_len"] = int(d["unguided_cache_len"])
                entry["unguided_prompt_len"] = int(tensors[name]["unguided_input_ids"].shape[1])
                entry["note"] = ("the rollout is the nav prompt's (as reference.safetensors); the unguided branch "
                                 "prefills the fused prompt without <|route_start|>..<|route_end|> (nav_utils."
                                 "remove_nav_text) in one batch row, repeats that cache per sample, then feeds ALL "
                                 "generated tokens (padded after <|traj_future_start|>, so the stop step's extra token "
                                 "too, as pad) at positions continuing its own rope delta")
            if name == "reference_zero_noise.safetensors":
                entry["note"] = ("diffusion_kwargs temperature 0: the sampler's torch.randn draw times 0 (zero start "
                                 "noise), one sample: what vla_ros computes with inference.noise_scale 0 and 1 sample")
            if name.endswith("budget_at_stop.safetensors"):
                entry["max_generation_length"] = len_nav
                entry["note"] = (("the cfg entry point with zero start noise, 1 sample, and " if case["cfg"] else
                                  "reference_zero_noise.safetensors' call with ")
                                 + "max_generation_length the greedy rollout's length: <|traj_future_start|> is sampled "
                                 "in the budget's last slot, generate runs no forward for it (cache_len = prompt + "
                                 "rollout - 1), the expert's positions still continue after it (expert_position_ids)"
                                 + ("; the unguided branch is fed every generated token, the last one too "
                                    "(unguided_cache_len = unguided prompt + rollout)" if case["cfg"] else ""))
            meta["cases"][name] = entry
        for path in sorted(p for p in stage.rglob("*") if p.is_file()):
            meta["files"][str(path.relative_to(stage))] = r1.sha256(path)
        (stage / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

        os.chdir(REPO_ROOT)
        if args.out.exists():
            shutil.rmtree(args.out)
        shutil.copytree(stage, args.out)
        total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
        log(f"wrote {args.out} ({total / 1e6:.2f} MB, {len(meta['files']) + 1} files)")
        for name, entry in meta["cases"].items():
            log(f"{name}: {entry['generated_text'][0]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
