"""Integrity of the Alpamayo-R1 golden fixture (test/fixtures/alpamayo_r1_tiny) — NOT compatibility.

These tests check the fixture itself: that the directory made by `scripts/make_reference_fixtures
alpamayo` from NVIDIA's reference code is complete, loads, and is self-consistent (Euler steps,
greedy rollout, token layout). They say nothing about whether vla_ros reproduces the reference;
that is what the replay tests of issue 18 (loader on model/, trajectories within 1e-4, same
reasoning tokens) are for.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

FIXTURE = Path(__file__).parent / "fixtures" / "alpamayo_r1_tiny"


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((FIXTURE / "meta.json").read_text(encoding="utf-8"))


CASES = ("reference.safetensors", "reference_no_stop.safetensors")


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
    listed = meta["files"]
    for name in ("model/config.json", "model/model.safetensors", "model/tokenizer.json", "base_vlm/config.json",
                 "base_vlm/tokenizer.json", "base_vlm/preprocessor_config.json", "inputs.safetensors", *CASES):
        assert name in listed, f"{name} missing from the manifest"
    for name, digest in listed.items():
        assert hashlib.sha256((FIXTURE / name).read_bytes()).hexdigest() == digest, f"{name} changed since it was made"
    present = {str(p.relative_to(FIXTURE)) for p in FIXTURE.rglob("*") if p.is_file()}
    assert present - {"meta.json"} == set(listed)
    assert len(meta["reference"]["commit"]) == 40
    total = sum((FIXTURE / n).stat().st_size for n in present)
    assert total < 5_000_000, f"fixture grew to {total / 1e6:.1f} MB"


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
    with safe_open(str(FIXTURE / "model" / "model.safetensors"), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        assert all(torch.isfinite(f.get_tensor(k)).all() for k in f.keys())
    assert {k.split(".")[0] for k in shapes} == {"vlm", "expert", "action_in_proj", "action_out_proj", "action_space"}
    assert not any(k.startswith("expert.embed_tokens") for k in shapes)  # the expert takes embeddings
    vocab = config["vocab_size"]
    hidden = shapes["vlm.model.language_model.embed_tokens.weight"][1]
    assert shapes["vlm.model.language_model.embed_tokens.weight"] == (vocab, hidden)
    assert shapes["vlm.lm_head.weight"] == (vocab, hidden)
    assert shapes["action_out_proj.weight"] == (2, shapes["expert.norm.weight"][0])
    fourier = config["action_in_proj_cfg"]["num_fourier_feats"]
    width = config["action_in_proj_cfg"]["hidden_size"]
    assert shapes["action_in_proj.encoder.trunk.0.weight"] == (width, 3 * fourier)  # accel, curvature, time
    for name in ("accel_mean", "accel_std", "curvature_mean", "curvature_std"):
        assert shapes[f"action_space.{name}"] == ()


def test_tokenizer_holds_the_token_layout_the_config_records(config, meta):
    tok = json.loads((FIXTURE / "model" / "tokenizer.json").read_text(encoding="utf-8"))
    ids = dict(tok["model"]["vocab"])
    ids.update({t["content"]: t["id"] for t in tok["added_tokens"]})
    start = config["traj_token_start_idx"]
    assert ids["<i0>"] == start and ids[f"<i{config['traj_vocab_size'] - 1}>"] == start + config["traj_vocab_size"] - 1
    for key, token in (("future_start", "<|traj_future_start|>"), ("history", "<|traj_history|>"),
                       ("history_start", "<|traj_history_start|>"), ("future_end", "<|traj_future_end|>")):
        assert ids[token] == config["traj_token_ids"][key]
    assert max(ids.values()) + 1 == config["vocab_size"]
    assert meta["tokens"]["hist_token_start_idx"] == start + config["traj_tokenizer_cfg"]["num_bins"]


def test_history_tokens_are_fused_into_the_placeholders(inputs, config, meta):
    before, after = inputs["prompt_input_ids"], inputs["input_ids"]
    placeholder = before == config["traj_token_ids"]["history"]
    assert int(placeholder.sum()) == config["tokens_per_history_traj"]
    assert torch.equal(before[~placeholder], after[~placeholder])
    hist = after[placeholder] - meta["tokens"]["hist_token_start_idx"]
    assert ((hist >= 0) & (hist < config["hist_traj_tokenizer_cfg"]["num_bins"])).all()


def test_euler_steps_follow_the_references_noise_to_data_direction(ref, meta):
    x, t, v = ref["flow_x"], ref["flow_t"], ref["flow_v"]
    steps = meta["shapes"]["flow_steps"]
    assert x.shape[0] == t.shape[0] == v.shape[0] == steps
    grid = torch.linspace(0.0, 1.0, steps + 1)  # t rises from noise (0) to data (1)
    assert torch.allclose(t, grid[:-1], atol=1e-7)
    assert torch.equal(x[0], ref["noise"])
    assert torch.equal(ref["flow_t_full"].reshape(steps, -1), t[:, None].expand(steps, x.shape[1]))
    for k in range(steps - 1):
        torch.testing.assert_close(x[k + 1], x[k] + (grid[k + 1] - grid[k]) * v[k], rtol=0, atol=1e-6)
    torch.testing.assert_close(ref["action"], x[-1] + (grid[-1] - grid[-2]) * v[-1], rtol=0, atol=1e-6)
    assert v.abs().mean() > 1e-2  # the velocities move x: a fixture of zeros would prove nothing


def test_greedy_rollout_is_the_argmax_and_sets_the_experts_prefix(ref, case, inputs, config, meta):
    seq, logits = ref["sequences_raw"], ref["generate_logits"].clone()
    prompt_len = meta["shapes"]["prompt_len"]
    samples = meta["shapes"]["samples"]
    assert torch.equal(seq[:, :prompt_len], inputs["input_ids"].expand(samples, -1))
    start, n = config["traj_token_start_idx"], config["traj_vocab_size"]
    logits[..., start:start + n] = float("-inf")  # the reference masks trajectory tokens while reasoning
    assert torch.equal(seq[:, prompt_len:], logits.argmax(-1))
    eos = config["traj_token_ids"]["future_start"]
    prefix, cache_len = ref["prefix_len"], int(ref["cache_len"])
    assert cache_len == seq.shape[1] - 1 == meta["cases"][case]["cache_len"]  # the last token is never fed
    for s in range(samples):
        if meta["cases"][case]["stops_at_traj_future_start"]:  # prefix: through <|traj_future_start|>
            assert int(seq[s, prefix[s] - 1]) == eos and not (seq[s, prompt_len:prefix[s] - 1] == eos).any()
            assert (ref["sequences"][s, prefix[s]:] == meta["tokens"]["pad_token_id"]).all()
        else:  # no <|traj_future_start|>: positions continue after the last token
            assert not (seq[s] == eos).any() and int(prefix[s]) == seq.shape[1]
            assert torch.equal(ref["sequences"][s], seq[s])
        visible = ref["expert_visible_keys"][s].bool()
        n_wp = meta["shapes"]["n_waypoints"]
        assert visible.shape[0] == cache_len + n_wp
        assert visible[:min(int(prefix[s]), cache_len)].all() and visible[cache_len:].all()
        assert not visible[int(prefix[s]):cache_len].any()
    n_wp = meta["shapes"]["n_waypoints"]
    expected = torch.arange(n_wp)[None, :] + ref["rope_deltas"] + prefix[:, None]  # (S, 64), same for t/h/w
    assert torch.equal(ref["expert_position_ids"], expected[None].expand(3, -1, -1))


def test_trajectory_outputs_have_the_reference_shapes(ref, meta):
    samples, n_wp = meta["shapes"]["samples"], meta["shapes"]["n_waypoints"]
    assert ref["pred_xyz"].shape == (1, 1, samples, n_wp, 3)
    assert ref["pred_rot"].shape == (1, 1, samples, n_wp, 3, 3)
    assert torch.isfinite(ref["pred_xyz"]).all() and torch.isfinite(ref["pred_rot"]).all()
    rot = ref["pred_rot"].reshape(-1, 3, 3)
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), torch.eye(3).expand_as(rot), rtol=0, atol=1e-5)
