"""Integrity of the Alpamayo 1.5 golden fixture (test/fixtures/alpamayo1_5_tiny) — NOT compatibility.

The directory is made by `scripts/make_reference_fixtures alpamayo1_5` from NVIDIA's own
NVlabs/alpamayo1.5 code. These tests check that it is complete and self-consistent (config and
weights as 1.5 saves them, token layout, the prompt with camera names, frame numbers and route span,
Euler steps, classifier-free guidance per step, greedy rollout, the expert's view of both caches).
Whether vla_ros reproduces the reference is for the replay tests.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from alpamayo_fixture_checks import (check_budget_at_stop, check_euler_steps, check_expert_view, check_greedy_rollout,
                                     check_history_fused, check_manifest, check_token_layout, check_trajectory_outputs,
                                     check_weight_layout, tokenizer_ids, weight_shapes)
from safetensors.torch import load_file
from tokenizers import Tokenizer

FIXTURE = Path(__file__).parent / "fixtures" / "alpamayo1_5_tiny"
CASES = ("reference.safetensors", "reference_no_nav.safetensors", "reference_cfg_nav.safetensors",
         "reference_zero_noise.safetensors", "reference_budget_at_stop.safetensors",
         "reference_cfg_nav_budget_at_stop.safetensors")
# helper.CAMERA_DISPLAY_NAMES of the reference: the label create_message puts before a camera's first frame
CAMERA_NAMES = {0: "Front left camera", 1: "Front camera", 2: "Front right camera", 3: "Rear left camera",
                4: "Rear camera", 5: "Rear right camera", 6: "Front telephoto camera"}
VISION = "<|vision_start|><|image_pad|><|vision_end|>"


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((FIXTURE / "meta.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def config() -> dict:
    return json.loads((FIXTURE / "model" / "config.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE / "inputs.safetensors"))


@pytest.fixture(scope="module")
def refs() -> dict[str, dict[str, torch.Tensor]]:
    return {name: load_file(str(FIXTURE / name)) for name in CASES}


@pytest.fixture(scope="module", params=CASES)
def case(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(str(FIXTURE / "model" / "tokenizer.json"))


def test_every_listed_file_is_there_unchanged_and_nothing_else(meta):
    check_manifest(FIXTURE, meta, ("model/config.json", "model/model.safetensors", "model/tokenizer.json",
                                   "base_vlm/config.json", "base_vlm/tokenizer.json", "base_vlm/preprocessor_config.json",
                                   "inputs.safetensors", *CASES))
    assert meta["reference"]["repository"] == "NVlabs/alpamayo1.5"
    assert all(check["same_reasoning_tokens"] and check["max_abs_xyz_rot_diff"] <= 1e-5
               for name, check in meta["reload_check"].items() if name in CASES)


def _targets(node) -> list[str]:
    if isinstance(node, dict):
        return [t for k, v in node.items() for t in ([v] if k == "_target_" else _targets(v))]
    return []


def test_config_json_has_the_1_5_fields(config, meta):
    assert config["model_type"] == "alpamayo1_5" and config["architectures"] == ["Alpamayo1_5"]
    targets = _targets(config)
    assert len(targets) >= 6 and all(t.startswith("alpamayo1_5.") or t.startswith("torch.") for t in targets)
    assert config["include_camera_ids"] is True and config["include_frame_nums"] is True
    diffusion = config["diffusion_cfg"]
    assert diffusion["_target_"] == "alpamayo1_5.diffusion.flow_matching.FlowMatching"
    assert diffusion["inference_guidance_weight"] == meta["cases"]["reference_cfg_nav.safetensors"]["guidance_weight"] != 1
    assert diffusion["use_classifier_free_guidance"] is False  # switched on per call through diffusion_kwargs
    assert config["vlm_name_or_path"] == meta["base_vlm"]["vlm_name_or_path"]
    # The statistics live only here (non-persistent buffers in 1.5): non-trivial, the same in both places
    stats = {k: config["action_space_cfg"][k] for k in meta["action_stats"]}
    assert stats == meta["action_stats"]
    assert stats["accel_mean"] != 0 and stats["curvature_mean"] != 0
    assert stats["accel_std"] != 1 and stats["curvature_std"] != 1
    assert config["traj_tokenizer_cfg"]["action_space_cfg"] == config["action_space_cfg"]


def test_weights_hold_no_action_statistics_and_no_fourier_frequencies(config):
    shapes = weight_shapes(FIXTURE)
    assert {k.split(".")[0] for k in shapes} == {"vlm", "expert", "action_in_proj", "action_out_proj"}
    assert not [k for k in shapes if k.endswith("freqs") or "mean" in k or k.endswith("_std")]
    check_weight_layout(shapes, config)


def test_tokenizer_holds_the_1_5_special_tokens_in_order(config, meta):
    ids = tokenizer_ids(FIXTURE)
    check_token_layout(ids, config, meta)
    keys = meta["tokens"]["special_tokens_keys"]
    assert [k for k in keys if k.startswith("_padding_")] == [f"_padding_{i}" for i in range(9)]
    for name in ("route_start", "route_pad", "route_end", "question_start", "question_end", "answer_start",
                 "answer_end"):
        assert name in keys
    added = [k for k in keys if k != "image_pad"]  # the base tokenizer already has <|image_pad|>
    first = ids[f"<|{added[0]}|>"]
    assert [ids[f"<|{k}|>"] for k in added] == list(range(first, first + len(added)))
    assert first == config["traj_token_start_idx"] + config["traj_vocab_size"]
    assert {k: ids[f"<|{k}|>"] for k in keys} == meta["tokens"]["special"]


def test_pixel_values_match_the_image_grid(inputs, meta):
    cams, frames = meta["shapes"]["num_cameras"], meta["shapes"]["num_frames"]
    assert inputs["camera_indices"].tolist() == meta["shapes"]["camera_indices"]
    assert inputs["images"].shape == (cams * frames, 3, *meta["shapes"]["image_hw"])
    assert inputs["image_grid_thw"].shape == (cams * frames, 3)
    assert inputs["pixel_values"].shape[0] == int(inputs["image_grid_thw"].prod(-1).sum())


def test_prompt_text_tokenizes_to_the_prompt_ids(case, refs, meta, inputs, tokenizer):
    """The recorded prompt text, tokenized whole with the fixture's tokenizer and each <|image_pad|>
    expanded to the image's merged patch count, gives the reference's prompt ids exactly."""
    ids = tokenizer.encode(meta["cases"][case]["prompt_text"], add_special_tokens=False).ids
    pad = tokenizer.token_to_id("<|image_pad|>")
    per_image = (inputs["image_grid_thw"].prod(-1) // 4).tolist()  # merge 2 x 2
    expanded, image = [], 0
    for i in ids:
        if i == pad:
            expanded += [pad] * per_image[image]
            image += 1
        else:
            expanded.append(i)
    assert image == len(per_image)
    assert expanded == refs[case]["prompt_input_ids"][0].tolist()


def test_prompt_names_each_camera_and_numbers_its_frames(case, meta, inputs):
    entry = meta["cases"][case]
    frames = meta["shapes"]["num_frames"]
    expected = []
    for cam in inputs["camera_indices"].tolist():
        expected.append(f"{CAMERA_NAMES[cam]}: ")
        for k in range(frames):
            expected += [f"frame {k} ", "<image>"]
    items = entry["user_content_items"]
    assert items[:-1] == expected
    nav = entry["nav_text"]
    route = f"<|route_start|>{nav}<|route_end|>" if nav is not None else ""
    assert items[-1] == ("<|traj_history_start|>" + "<|traj_history|>" * 48 + "<|traj_history_end|>" + route
                         + "output the chain-of-thought reasoning of the driving process, then output the future "
                           "trajectory.")
    user = "".join(VISION if item == "<image>" else item for item in items)
    assert entry["prompt_text"] == ("<|im_start|>system\nYou are a driving assistant that generates safe and accurate "
                                    f"actions.<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
                                    "<|cot_start|>")
    assert entry["piecewise_tokenization"]["same"] is False  # BPE merges across the items: tokenize whole


def test_history_tokens_are_fused_into_the_placeholders(case, refs, config, meta):
    ref = refs[case]
    check_history_fused(ref["prompt_input_ids"], ref["input_ids"], config, meta["tokens"]["hist_token_start_idx"])


def test_route_span_is_in_the_nav_prompts_only_and_the_unguided_prefix_drops_it(refs, meta, tokenizer):
    start, end = meta["tokens"]["special"]["route_start"], meta["tokens"]["special"]["route_end"]
    for name in CASES:
        ids = refs[name]["input_ids"][0].tolist()
        if meta["cases"][name]["nav_text"] is None:
            assert start not in ids and end not in ids
            continue
        assert ids.count(start) == ids.count(end) == 1 and ids.index(start) < ids.index(end)
        assert tokenizer.decode(ids[ids.index(start) + 1:ids.index(end)]) == meta["nav_text"]
    cfg = refs["reference_cfg_nav.safetensors"]
    ids = cfg["input_ids"][0].tolist()
    without = ids[:ids.index(start)] + ids[ids.index(end) + 1:]
    assert cfg["unguided_input_ids"][0].tolist() == without
    assert torch.equal(cfg["unguided_input_ids"], refs["reference_no_nav.safetensors"]["input_ids"])


def test_euler_steps_follow_the_references_noise_to_data_direction(case, refs, meta):
    check_euler_steps(refs[case], meta["shapes"]["flow_steps"])


def test_guided_velocity_is_the_weighted_mix_of_both_step_functions(refs, config):
    cfg, plain = refs["reference_cfg_nav.safetensors"], refs["reference.safetensors"]
    w = config["diffusion_cfg"]["inference_guidance_weight"]
    assert float(cfg["guidance_weight"]) == w
    g, u = cfg["flow_v_guided"], cfg["flow_v_unguided"]
    assert g.shape == u.shape == cfg["flow_v"].shape
    torch.testing.assert_close(cfg["flow_v"], (1 - w) * u + w * g, rtol=0, atol=1e-6)
    assert (g - u).abs().mean() > 1e-4  # the route span changes the velocity: guidance has an effect
    # Same seed, same prompt and cache: the guided step function's first call is the plain entry point's
    assert torch.equal(cfg["noise"], plain["noise"])
    torch.testing.assert_close(g[0], plain["flow_v"][0], rtol=0, atol=1e-6)


def test_greedy_rollout_is_the_argmax_and_sets_the_experts_prefix(case, refs, config, meta):
    ref, entry = refs[case], meta["cases"][case]
    assert ref["sequences_raw"].shape[0] == entry["num_traj_samples"]
    assert ref["input_ids"].shape[1] == entry["prompt_len"]
    cache_len = check_greedy_rollout(ref, ref["input_ids"], config, meta["tokens"]["pad_token_id"], stops=True)
    assert cache_len == entry["cache_len"]
    check_expert_view(ref["expert_visible_keys"], ref["expert_position_ids"], ref["prefix_len"], cache_len,
                      ref["rope_deltas"], meta["shapes"]["n_waypoints"])


def test_unguided_cache_holds_the_unguided_prompt_and_every_generated_token(refs, meta):
    cfg = refs["reference_cfg_nav.safetensors"]
    prompt_len, gen = cfg["input_ids"].shape[1], cfg["sequences"][:, cfg["input_ids"].shape[1]:]
    samples = gen.shape[0]
    unguided = torch.cat([cfg["unguided_input_ids"].expand(samples, -1), gen], dim=1)
    assert torch.equal(cfg["unguided_sequences"], unguided)
    cache_len = int(cfg["unguided_cache_len"])
    assert cache_len == cfg["unguided_input_ids"].shape[1] + gen.shape[1]  # the padded stop-step token too
    assert cache_len == meta["cases"]["reference_cfg_nav.safetensors"]["unguided_cache_len"]
    route_len = prompt_len - cfg["unguided_input_ids"].shape[1]
    assert torch.equal(cfg["unguided_prefix_len"], cfg["prefix_len"] - route_len)
    check_expert_view(cfg["unguided_expert_visible_keys"], cfg["unguided_expert_position_ids"],
                      cfg["unguided_prefix_len"], cache_len, cfg["unguided_rope_deltas"], meta["shapes"]["n_waypoints"])
    # Its own rope delta: the unguided prompt is shorter, the images the same
    assert int(cfg["unguided_rope_deltas"].reshape(-1)[0]) == int(refs["reference_no_nav.safetensors"]["rope_deltas"][0])


def test_zero_noise_case_starts_from_zero(refs):
    zero, plain = refs["reference_zero_noise.safetensors"], refs["reference.safetensors"]
    assert zero["noise"].shape[0] == 1 and not zero["noise"].any()
    assert torch.equal(zero["sequences_raw"][0], plain["sequences_raw"][0])


def test_budget_at_stop_case_never_feeds_the_stop_token(refs, meta):
    """<|traj_future_start|> sampled in the budget's last slot: generate ran no forward for it, so the
    cache lacks its key, while the expert's positions still continue after it."""
    ref, zero = refs["reference_budget_at_stop.safetensors"], refs["reference_zero_noise.safetensors"]
    budget = check_budget_at_stop(ref, zero, meta, "reference_budget_at_stop.safetensors", ref["input_ids"].shape[1])
    # one key less moves the trajectory by more than the replay's tolerance (1e-4)
    assert float((ref["pred_xyz"] - zero["pred_xyz"]).abs().max()) > 3e-4
    # Through the cfg entry point: the guided cache the same, the unguided branch fed every generated
    # token, <|traj_future_start|> in the last slot too, so its expert sees its whole cache.
    cfg = refs["reference_cfg_nav_budget_at_stop.safetensors"]
    assert meta["cases"]["reference_cfg_nav_budget_at_stop.safetensors"]["max_generation_length"] == budget
    assert torch.equal(cfg["sequences_raw"], ref["sequences_raw"]) and int(cfg["cache_len"]) == int(ref["cache_len"])
    assert torch.equal(cfg["expert_position_ids"], ref["expert_position_ids"]) and not cfg["noise"].any()
    unguided_len = cfg["unguided_input_ids"].shape[1] + budget
    assert int(cfg["unguided_cache_len"]) == int(cfg["unguided_prefix_len"][0]) == unguided_len


def test_trajectory_outputs_have_the_reference_shapes(case, refs, meta):
    check_trajectory_outputs(refs[case], meta["cases"][case]["num_traj_samples"], meta["shapes"]["n_waypoints"])
