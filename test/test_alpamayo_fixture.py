"""Integrity of the Alpamayo-R1 golden fixture (test/fixtures/alpamayo_r1_tiny) — NOT compatibility.

These tests check the fixture itself: that the directory made by `scripts/make_reference_fixtures
alpamayo` from NVIDIA's reference code is complete, loads, and is self-consistent (Euler steps,
greedy rollout, token layout). They say nothing about whether vla_ros reproduces the reference;
that is what the replay tests of issue 18 (loader on model/, trajectories within 1e-4, same
reasoning tokens) are for.
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

FIXTURE = Path(__file__).parent / "fixtures" / "alpamayo_r1_tiny"


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((FIXTURE / "meta.json").read_text(encoding="utf-8"))


CASES = ("reference.safetensors", "reference_no_stop.safetensors", "reference_budget_at_stop.safetensors")


@pytest.fixture(scope="module", params=CASES)
def case(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def ref(case) -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE / case))


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE / "inputs.safetensors"))


@pytest.fixture(scope="module")
def config() -> dict:
    return json.loads((FIXTURE / "model" / "config.json").read_text(encoding="utf-8"))


def test_every_listed_file_is_there_unchanged_and_nothing_else(meta):
    check_manifest(FIXTURE, meta, ("model/config.json", "model/model.safetensors", "model/tokenizer.json",
                                   "base_vlm/config.json", "base_vlm/tokenizer.json", "base_vlm/preprocessor_config.json",
                                   "inputs.safetensors", *CASES))


def test_config_json_parses_with_the_release_fields(config, meta):
    assert config["model_type"] == "alpamayo_r1" and config["architectures"] == ["AlpamayoR1"]
    targets = {k: config[k]["_target_"] for k in ("diffusion_cfg", "action_space_cfg", "action_in_proj_cfg",
                                                  "action_out_proj_cfg", "traj_tokenizer_cfg", "hist_traj_tokenizer_cfg")}
    assert targets["action_in_proj_cfg"].endswith("PerWaypointActionInProjV2")
    assert targets["diffusion_cfg"].endswith("FlowMatching")
    assert targets["action_space_cfg"].endswith("UnicycleAccelCurvatureActionSpace")
    assert config["vlm_name_or_path"] == meta["base_vlm"]["vlm_name_or_path"]
    assert config["tokens_per_history_traj"] == 48 and config["tokens_per_future_traj"] == 128
    base = json.loads((FIXTURE / "base_vlm" / "config.json").read_text(encoding="utf-8"))
    assert base["model_type"] == "qwen3_vl" and "text_config" in base and "vision_config" in base


def test_weights_load_and_match_the_config(config):
    shapes = weight_shapes(FIXTURE)
    assert {k.split(".")[0] for k in shapes} == {"vlm", "expert", "action_in_proj", "action_out_proj", "action_space"}
    check_weight_layout(shapes, config)
    for name in ("accel_mean", "accel_std", "curvature_mean", "curvature_std"):  # persistent buffers in R1
        assert shapes[f"action_space.{name}"] == ()


def test_tokenizer_holds_the_token_layout_the_config_records(config, meta):
    check_token_layout(tokenizer_ids(FIXTURE), config, meta)


def test_history_tokens_are_fused_into_the_placeholders(inputs, config, meta):
    check_history_fused(inputs["prompt_input_ids"], inputs["input_ids"], config, meta["tokens"]["hist_token_start_idx"])


def test_euler_steps_follow_the_references_noise_to_data_direction(ref, meta):
    check_euler_steps(ref, meta["shapes"]["flow_steps"])


def test_greedy_rollout_is_the_argmax_and_sets_the_experts_prefix(ref, case, inputs, config, meta):
    assert ref["sequences_raw"].shape[0] == meta["cases"][case].get("num_traj_samples", meta["shapes"]["samples"])
    assert inputs["input_ids"].shape[1] == meta["shapes"]["prompt_len"]
    cache_len = check_greedy_rollout(ref, inputs["input_ids"], config, meta["tokens"]["pad_token_id"],
                                     meta["cases"][case]["stops_at_traj_future_start"])
    assert cache_len == meta["cases"][case]["cache_len"]
    check_expert_view(ref["expert_visible_keys"], ref["expert_position_ids"], ref["prefix_len"], cache_len,
                      ref["rope_deltas"], meta["shapes"]["n_waypoints"])


def test_trajectory_outputs_have_the_reference_shapes(ref, case, meta):
    check_trajectory_outputs(ref, meta["cases"][case].get("num_traj_samples", meta["shapes"]["samples"]),
                             meta["shapes"]["n_waypoints"])


def test_budget_at_stop_case_never_feeds_the_stop_token(inputs, meta):
    """<|traj_future_start|> sampled in the budget's last slot: generate ran no forward for it, so the
    cache lacks its key, while the expert's positions still continue after it."""
    ref = load_file(str(FIXTURE / "reference_budget_at_stop.safetensors"))
    zero = load_file(str(FIXTURE / "reference_zero_noise.safetensors"))
    check_budget_at_stop(ref, zero, meta, "reference_budget_at_stop.safetensors", inputs["input_ids"].shape[1])
    # one key less moves each velocity by more than the replay's per-step tolerance (1e-5)
    assert float((ref["flow_v"] - zero["flow_v"]).abs().max()) > 5e-5
