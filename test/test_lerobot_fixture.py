"""INTEGRITY of the LeRobot golden fixtures (test/fixtures/lerobot_{pi0,pi05}_tiny), not compatibility.

These tests check that what scripts/reference_fixtures/lerobot.py recorded from LeRobot 0.6.1 is complete
and self-consistent: the policy directory is LeRobot's layout, its weights load and have the sizes the
overrides describe, the recorded flow steps follow LeRobot's Euler rule from t=1 to t=0, the processor
statistics are present and turn the recorded normalized chunk into the recorded actions, and the
recorded prompt tokens are what the processors make of the inputs. They say nothing about vla_ros's own
pi0 implementation: the compatibility check (our actions within 1e-4 of these, fp32) belongs to the
joint_mot family's tests. See docs/pi0.md.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

FIXTURES = Path(__file__).parent / "fixtures"
VARIANTS = {"pi0": FIXTURES / "lerobot_pi0_tiny", "pi05": FIXTURES / "lerobot_pi05_tiny"}
EXPECTED_FILES = {
    "config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json",
    "tokenizer.json", "tokenizer_config.json", "lerobot_overrides.json", "reference.json", "reference.safetensors",
    "rtc.json", "rtc.safetensors",
}
EXPERT = "model.paligemma_with_expert.gemma_expert.model."
VLM = "model.paligemma_with_expert.paligemma.model."


class Fixture:
    def __init__(self, variant: str):
        self.variant = variant
        self.path = VARIANTS[variant]
        self.config = json.loads((self.path / "config.json").read_text())
        self.meta = json.loads((self.path / "reference.json").read_text())
        self.overrides = json.loads((self.path / "lerobot_overrides.json").read_text())
        self.ref = load_file(str(self.path / "reference.safetensors"))
        self.weights = load_file(str(self.path / "model.safetensors"))
        self.pre = json.loads((self.path / "policy_preprocessor.json").read_text())
        self.post = json.loads((self.path / "policy_postprocessor.json").read_text())

    def step(self, pipeline: dict, registry_name: str) -> dict:
        steps = [s for s in pipeline["steps"] if s["registry_name"] == registry_name]
        assert len(steps) == 1, f"{registry_name} in {pipeline['name']}: {len(steps)} steps"
        return steps[0]

    def stats(self, pipeline: dict, registry_name: str) -> dict:
        return load_file(str(self.path / self.step(pipeline, registry_name)["state_file"]))

    def size(self, variant_name: str) -> dict:
        return self.overrides["gemma_variants"][variant_name]


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def fx(request) -> Fixture:
    return Fixture(request.param)


def test_directory_is_complete_and_pickle_free(fx):
    names = {p.name for p in fx.path.iterdir()}
    state_files = {fx.step(fx.pre, "normalizer_processor")["state_file"],
                   fx.step(fx.post, "unnormalizer_processor")["state_file"]}
    assert names == EXPECTED_FILES | state_files
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt")) for n in names)
    assert fx.config["type"] == fx.variant == fx.meta["variant"]
    assert sum(p.stat().st_size for p in fx.path.iterdir()) < 5e6, "fixtures must stay a few MB"


def test_reference_tensors_match_their_listing(fx):
    listed = fx.meta["tensors"]
    assert set(listed) == set(fx.ref)
    for name, t in fx.ref.items():
        assert list(t.shape) == listed[name]["shape"], name
        assert str(t.dtype).replace("torch.", "") == listed[name]["dtype"], name
        if t.is_floating_point():
            assert torch.isfinite(t).all(), name


def test_weights_have_the_overridden_sizes(fx):
    w = fx.weights
    assert all(k.startswith("model.") for k in w)
    assert all(t.dtype == torch.float32 for t in w.values())
    vlm, exp = fx.size(fx.config["paligemma_variant"]), fx.size(fx.config["action_expert_variant"])
    vocab, vision = fx.overrides["vocab_size"], fx.overrides["vision"]
    assert vlm["depth"] == exp["depth"] and vlm["num_heads"] == exp["num_heads"] == 8
    assert vlm["head_dim"] == exp["head_dim"] and vlm["num_kv_heads"] == exp["num_kv_heads"]
    assert w[VLM + "language_model.embed_tokens.weight"].shape == (vocab, vlm["width"])
    for prefix, size in ((VLM + "language_model.", vlm), (EXPERT, exp)):
        layers = {k.split(".layers.")[1].split(".")[0] for k in w if k.startswith(prefix + "layers.")}
        assert layers == {str(i) for i in range(size["depth"])}
        attn = prefix + "layers.0.self_attn."
        assert w[attn + "q_proj.weight"].shape == (size["num_heads"] * size["head_dim"], size["width"])
        assert w[attn + "k_proj.weight"].shape == (size["num_kv_heads"] * size["head_dim"], size["width"])
        assert w[attn + "o_proj.weight"].shape == (size["width"], size["num_heads"] * size["head_dim"])
        assert w[prefix + "layers.0.mlp.gate_proj.weight"].shape == (size["mlp_dim"], size["width"])
    patch = vision["patch_size"]
    res = fx.config["image_resolution"][0]
    vt = VLM + "vision_tower.vision_model."
    assert w[vt + "embeddings.patch_embedding.weight"].shape == (vision["hidden_size"], 3, patch, patch)
    assert w[vt + "embeddings.position_embedding.weight"].shape == ((res // patch) ** 2, vision["hidden_size"])
    assert w[VLM + "multi_modal_projector.linear.weight"].shape == (vlm["width"], vision["hidden_size"])
    a = fx.config["max_action_dim"]
    assert w["model.action_in_proj.weight"].shape == (exp["width"], a)
    assert w["model.action_out_proj.weight"].shape == (a, exp["width"])
    if fx.variant == "pi0":  # state token + action/time MLP, plain RMSNorm in the expert
        assert w["model.state_proj.weight"].shape == (exp["width"], fx.config["max_state_dim"])
        assert w["model.action_time_mlp_in.weight"].shape == (exp["width"], 2 * exp["width"])
        assert EXPERT + "layers.0.input_layernorm.weight" in w
        assert not any("dense" in k for k in w)
    else:  # no state token; time MLP feeds adaptive RMSNorm (scale, shift, gate) in every expert norm
        assert not any(k.startswith("model.state_proj") for k in w)
        assert w["model.time_mlp_in.weight"].shape == (exp["width"], exp["width"])
        for norm in ("layers.0.input_layernorm", "layers.0.post_attention_layernorm", "norm"):
            assert w[EXPERT + norm + ".dense.weight"].shape == (3 * exp["width"], exp["width"])
        assert VLM + "language_model.layers.0.input_layernorm.weight" in w


def test_flow_steps_follow_lerobots_euler_rule(fx):
    r = fx.ref
    steps = fx.config["num_inference_steps"]
    x, t, v = r["flow.x"], r["flow.t"], r["flow.v"]
    assert x.shape[0] == steps + 1 and t.shape[0] == steps and v.shape[0] == steps
    assert x.shape[1:] == (fx.meta["batch"], fx.config["chunk_size"], fx.config["max_action_dim"])
    assert torch.equal(x[0], r["flow.noise"])
    dt = -1.0 / steps
    assert fx.meta["dt"] == dt
    expected_t = torch.tensor([1.0 + k * dt for k in range(steps)], dtype=torch.float32)
    assert torch.equal(t, expected_t[:, None].expand_as(t))  # t = 1 -> 1/steps, from noise to actions
    for k in range(steps):
        assert torch.allclose(x[k + 1], x[k] + dt * v[k], atol=1e-6, rtol=0), f"step {k}"
    d = fx.meta["action_dim"]
    assert torch.equal(x[-1][..., :d], r["output.actions_normalized"])
    assert (v[1:] - v[:-1]).abs().max() > 1e-3, "velocity does not change with t"


def _unnormalize(a: torch.Tensor, s: dict, key: str, mode: str) -> torch.Tensor:
    if mode == "MEAN_STD":
        return a * s[f"{key}.std"] + s[f"{key}.mean"]
    assert mode == "QUANTILES"
    return (a + 1.0) * (s[f"{key}.q99"] - s[f"{key}.q01"]) / 2.0 + s[f"{key}.q01"]


def _normalize(x: torch.Tensor, s: dict, key: str, mode: str, eps: float) -> torch.Tensor:
    if mode == "MEAN_STD":
        return (x - s[f"{key}.mean"]) / (s[f"{key}.std"] + eps)
    return 2.0 * (x - s[f"{key}.q01"]) / (s[f"{key}.q99"] - s[f"{key}.q01"]) - 1.0


def test_processor_statistics_are_present_and_explain_the_actions(fx):
    mode = fx.meta["normalization"]
    assert mode == {"pi0": "MEAN_STD", "pi05": "QUANTILES"}[fx.variant]
    assert fx.config["normalization_mapping"] == {"VISUAL": "IDENTITY", "STATE": mode, "ACTION": mode}
    needed = ("mean", "std") if mode == "MEAN_STD" else ("q01", "q99")
    post, pre = fx.stats(fx.post, "unnormalizer_processor"), fx.stats(fx.pre, "normalizer_processor")
    for stats, keys in ((post, ("action",)), (pre, ("action", "observation.state"))):
        for key in keys:
            for stat in needed:
                assert stats[f"{key}.{stat}"].shape == (fx.meta["action_dim" if key == "action" else "state_dim"],)
    r = fx.ref
    assert torch.allclose(_unnormalize(r["output.actions_normalized"], post, "action", mode), r["output.actions"],
                          atol=1e-5, rtol=1e-6)
    eps = fx.step(fx.pre, "normalizer_processor")["config"]["eps"]
    assert torch.allclose(_normalize(r["input.observation.state"], pre, "observation.state", mode, eps),
                          r["batch.observation.state"], atol=1e-5, rtol=1e-6)
    assert torch.equal(r["output.select_action"], r["output.actions"][:, 0])


def test_prompt_tokens_are_what_the_processors_make(fx):
    from transformers import AutoTokenizer

    tok_step = fx.step(fx.pre, "tokenizer_processor")["config"]
    assert tok_step["tokenizer_name"] in fx.overrides["tokenizer"]  # resolved to this directory
    assert tok_step["max_length"] == fx.config["tokenizer_max_length"] and tok_step["padding_side"] == "right"
    tok = AutoTokenizer.from_pretrained(str(fx.path), local_files_only=True)
    ids, mask = fx.ref["batch.observation.language.tokens"], fx.ref["batch.observation.language.attention_mask"]
    assert ids.shape == (fx.meta["batch"], fx.config["tokenizer_max_length"])
    if fx.variant == "pi05":  # state in the prompt: normalized to [-1, 1], 256 bins
        state = fx.ref["batch.observation.state"].numpy()
        bins = np.digitize(state, bins=np.linspace(-1, 1, 256 + 1)[:-1]) - 1
    for i, task in enumerate(fx.meta["tasks"]):
        n = int(mask[i].sum())
        assert mask[i, :n].all() and not mask[i, n:].any()  # right padding
        assert (ids[i, n:] == tok.pad_token_id).all()
        if fx.variant == "pi0":
            prompt = f"{task}\n"
        else:
            prompt = f"Task: {task}, State: {' '.join(map(str, bins[i]))};\nAction: "
        assert ids[i, :n].tolist() == tok(prompt)["input_ids"]
        assert ids[i, 0] == tok.bos_token_id


def test_prefix_layout_is_bidirectional_images_then_language(fx):
    r = fx.ref
    cams = list(fx.meta["cameras"])
    n_images = len(cams) + fx.config["empty_cameras"]
    per_image = (fx.config["image_resolution"][0] // fx.overrides["vision"]["patch_size"]) ** 2
    length = n_images * per_image + fx.config["tokenizer_max_length"]
    b = fx.meta["batch"]
    assert r["prefix.embs"].shape == (b, length, fx.size(fx.config["paligemma_variant"])["width"])
    assert not r["prefix.att_masks"].any()  # every prefix token starts no new block: all see each other
    pad = r["prefix.pad_masks"]
    for i in range(n_images):
        img_mask = r[f"model.image_mask.{i}"]
        assert torch.equal(pad[:, i * per_image:(i + 1) * per_image], img_mask[:, None].expand(b, per_image))
        img = r[f"model.image.{i}"]
        assert img.shape == (b, 3, *fx.config["image_resolution"])
        if i < len(cams):
            assert img_mask.all() and img.min() >= -1 and img.max() <= 1
            raw = r[f"input.{cams[i]}"]
            if tuple(raw.shape[-2:]) == tuple(fx.config["image_resolution"]):
                assert torch.allclose(img, raw * 2 - 1, atol=1e-6)  # no resize: only [0,1] -> [-1,1]
        else:  # an empty camera: an all -1 image whose tokens are padding
            assert not img_mask.any() and (img == -1).all()
    assert torch.equal(pad[:, n_images * per_image:], r["batch.observation.language.attention_mask"])


def test_recorded_actions_depend_on_every_input(fx):
    sens = fx.meta["sensitivity"]
    assert set(sens) == set(fx.meta["cameras"]) | {"observation.state", "task", "noise"}
    for name, change in sens.items():  # far above the 1e-4 tolerance of the compatibility check
        assert change > 1e-2, f"{name}: {change}"


def test_rtc_record_is_complete_and_guidance_mattered(fx):
    """rtc.{json,safetensors} (LeRobot's real-time chunking on this fixture): listed tensors, one case
    per prefix schedule, each leftover the tail of the recorded chunk, guided chunks pulled to it."""
    meta = json.loads((fx.path / "rtc.json").read_text())
    rtc = load_file(str(fx.path / "rtc.safetensors"))
    assert set(meta["tensors"]) == set(rtc)
    assert {c["schedule"] for c in meta["cases"].values()} == {"ZEROS", "ONES", "LINEAR", "EXP"}
    prev = fx.ref["output.actions_normalized"]
    for name, case in meta["cases"].items():
        assert torch.equal(rtc[f"{name}.leftover"], prev[:, case["executed"]:]), name
        d, far = case["inference_delay"], case["max_abs_first_d_to_leftover"]
        near = float((rtc[f"{name}.actions_normalized"][:, :d] - rtc[f"{name}.leftover"][:, :d]).abs().max())
        assert near == pytest.approx(far["guided"]) and near < 0.1 * far["unguided"], name
    assert all(len(w["weights"]) == w["total"] for w in meta["prefix_weights"])
