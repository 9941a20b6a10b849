"""Model pieces: config validation, tokenizers, prompt, image preprocessing, action space, flow."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vla_ros.model import UnknownPresetError, build_preset, load_model
from vla_ros.model.action_space import ActionStats, UnicycleAccelCurvature
from vla_ros.model.config import ActionSpaceConfig, FlowConfig, HistoryConfig, ImageConfig, ModelConfigError, VLAConfig
from vla_ros.model.flow_matching import flow_schedule
from vla_ros.model.history_tokenizer import HistoryError, HistoryTokenizer
from vla_ros.model.image_preprocess import ImageInputError, ImagePreprocessor, smart_resize
from vla_ros.model.presets import preset_config
from vla_ros.model.prompt import PromptBuilder
from vla_ros.model.text_tokenizer import TextTokenizer, TokenizerError, build_byte_tokenizer


@pytest.fixture(scope="module")
def tiny():
    return build_preset("random:tiny")


# ---------------------------------------------------------------- presets and config
def test_tiny_preset_is_small_and_seeded(tiny):
    model, tok = tiny
    assert 1e6 < model.num_parameters() < 20e6
    again, _ = build_preset("random:tiny")
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert not hasattr(model.expert, "embed_tokens")  # expert has no token embeddings
    assert model.expert.config.num_hidden_layers == model.text_config.num_hidden_layers


def test_unknown_preset_names_known_ones():
    with pytest.raises(UnknownPresetError, match="random:tiny"):
        load_model("random:nope")


def test_alpamayo_preset_has_published_dimensions():
    cfg = preset_config("random:alpamayo-r1-10b")
    text, vision = cfg.vlm["text_config"], cfg.vlm["vision_config"]
    assert (text["hidden_size"], text["num_hidden_layers"], text["num_key_value_heads"], text["head_dim"]) == (4096, 36, 8, 128)
    assert vision["depth"] == 27 and vision["hidden_size"] == 1152
    assert cfg.expert["hidden_size"] == 2048 and cfg.expert["num_attention_heads"] == 16
    assert smart_resize(1080, 1920, 32, cfg.image.min_pixels, cfg.image.max_pixels) == (320, 576)


def test_config_round_trip_and_errors():
    cfg = preset_config("random:tiny")
    assert VLAConfig.from_dict(cfg.to_dict()) == cfg
    data = cfg.to_dict()
    data["flow"]["direction"] = "sideways"
    with pytest.raises(ModelConfigError, match="flow.direction"):
        VLAConfig.from_dict(data)
    data = cfg.to_dict()
    data["expert"] = {"num_hidden_layers": 3}
    with pytest.raises(ModelConfigError, match="expert.num_hidden_layers"):
        VLAConfig.from_dict(data)
    data = cfg.to_dict()
    data["flow"]["stepz"] = 3
    with pytest.raises(ModelConfigError, match="flow.stepz"):
        VLAConfig.from_dict(data)
    with pytest.raises(ModelConfigError, match="architecture"):
        VLAConfig.from_dict({**cfg.to_dict(), "architecture": "mystery"})


# ---------------------------------------------------------------- tokenizers and prompt
def test_tokenizer_specials_and_round_trip(tiny):
    _, tok = tiny
    text = "Slow down: pedestrian ahead, 30 km/h."
    assert tok.decode(tok.encode(text)) == text
    ids = tok.ids
    assert tok.encode(tok.prompt.traj_token_format.format(7)) == [ids.traj_first + 7]
    assert len({ids.image_pad, ids.vision_start, ids.vision_end, ids.reasoning_start, ids.reasoning_end}) == 5


def test_tokenizer_missing_special_token_is_named():
    cfg = preset_config("random:tiny")
    raw = build_byte_tokenizer(cfg.prompt, 10)  # only 10 traj tokens
    with pytest.raises(TokenizerError, match="<i999>"):
        TextTokenizer(raw, cfg.prompt, 1000)


def test_history_tokenizer_round_trip():
    h = HistoryTokenizer(HistoryConfig())
    t = (np.arange(16) - 15) * 0.1
    xyz = np.stack([9 * t, 0.3 * t ** 2, 0.01 * t], -1)
    bins = h.encode(xyz)
    assert bins.shape == (48,) and bins.dtype == np.int64 and bins.min() >= 0 and bins.max() < 1000
    back = h.decode(bins)
    step = np.array([8 / 1000, 8 / 1000, 20 / 1000])
    # errors accumulate over at most 16 deltas of half a bin each
    assert np.all(np.abs(back - xyz) <= 16 * step / 2 + 1e-9)
    with pytest.raises(HistoryError, match=r"\(16, 3\)"):
        h.encode(xyz[:10])
    bad = xyz.copy()
    bad[3, 1] = np.nan
    with pytest.raises(HistoryError, match="NaN"):
        h.encode(bad)


def test_prompt_layout(tiny):
    model, tok = tiny
    pb = PromptBuilder(tok)
    bins = np.arange(48)
    p = pb.build(16, 28, bins)
    ids = p.input_ids[0].tolist()
    assert ids[0] == tok.ids.im_start and ids[-1] == tok.ids.reasoning_start
    assert ids.count(tok.ids.image_pad) == 16 * 28 == int(p.mm_token_type_ids.sum())
    assert ids.count(tok.ids.vision_start) == ids.count(tok.ids.vision_end) == 16
    hs, he = ids.index(tok.ids.history_start), ids.index(tok.ids.history_end)
    assert ids[hs + 1:he] == [tok.ids.traj_first + b for b in bins]
    assert hs > max(i for i, x in enumerate(ids) if x == tok.ids.vision_end)  # images come first


# ---------------------------------------------------------------- image preprocessing
def test_smart_resize_matches_transformers():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_resize

    for h, w in [(1080, 1920), (320, 576), (100, 1000), (37, 41), (2000, 2000)]:
        assert smart_resize(h, w, 32, 16_384, 28_672) == hf_resize(h, w, 32, 16_384, 28_672)


def test_patches_match_transformers_layout():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    cfg = ImageConfig(min_pixels=64 * 96, max_pixels=64 * 96)
    pre = ImagePreprocessor(cfg)
    img = np.random.default_rng(0).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
    pix, grid = pre(img)
    assert grid.tolist() == [[1, 4, 6]] and pix.shape == (24, 3 * 2 * 16 * 16)
    norm = (img[0].astype(np.float32) / 255.0 - 0.5) / 0.5
    ref, gh, gw = Qwen2VLImageProcessorPil.patchify(None, norm.transpose(2, 0, 1), 16, 2, 2)
    assert (gh, gw) == (4, 6)
    np.testing.assert_allclose(pix.numpy(), ref, atol=1e-5)


def test_image_preprocess_errors():
    pre = ImagePreprocessor(ImageConfig())
    with pytest.raises(ImageInputError, match="uint8"):
        pre(np.zeros((1, 64, 64, 3), dtype=np.float32))
    with pytest.raises(ImageInputError, match="RGB"):
        pre(np.zeros((1, 64, 64), dtype=np.uint8))


# ---------------------------------------------------------------- action space (test d)
def _space(**kw) -> UnicycleAccelCurvature:
    return UnicycleAccelCurvature(ActionSpaceConfig(**kw), ActionStats())


def _integrate(space, accel, curv, v0):
    t = space.cfg.num_waypoints
    ac = torch.stack([torch.full((1, t), accel, dtype=torch.float64), torch.full((1, t), curv, dtype=torch.float64)], -1)
    zero = torch.zeros(1, dtype=torch.float64)
    return space.integrate(ac, torch.tensor([v0], dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64), zero)


def test_constant_speed_straight():
    space = _space()
    xyz, rot = _integrate(space, 0.0, 0.0, 10.0)
    k = torch.arange(1, 65, dtype=torch.float64)
    torch.testing.assert_close(xyz[0, :, 0], 10.0 * 0.1 * k)
    assert xyz.shape == (1, 64, 3) and rot.shape == (1, 64, 3, 3)
    assert torch.all(xyz[0, :, 1:] == 0)
    torch.testing.assert_close(rot[0], torch.eye(3, dtype=torch.float64).expand(64, 3, 3))


def test_constant_curvature_circle():
    space = _space()
    v, kappa = 10.0, 0.05
    xyz, rot = _integrate(space, 0.0, kappa, v)
    s = v * 0.1 * torch.arange(1, 65, dtype=torch.float64)  # arc length
    theta = kappa * s
    torch.testing.assert_close(torch.atan2(rot[0, :, 1, 0], rot[0, :, 0, 0]), torch.atan2(torch.sin(theta), torch.cos(theta)))
    exact = torch.stack([torch.sin(theta) / kappa, (1 - torch.cos(theta)) / kappa], -1)
    # trapezoidal integration of the heading: second-order error, a few cm over a 64 m arc
    assert float((xyz[0, :, :2] - exact).norm(dim=-1).max()) < 0.05
    radius = (xyz[0, :, :2] - torch.tensor([0.0, 1 / kappa], dtype=torch.float64)).norm(dim=-1)
    assert float((radius - 1 / kappa).abs().max()) < 0.05
    torch.testing.assert_close(torch.det(rot[0]), torch.ones(64, dtype=torch.float64))


def test_constant_acceleration_is_exact():
    space = _space()
    xyz, _ = _integrate(space, 1.5, 0.0, 2.0)
    t = 0.1 * torch.arange(1, 65, dtype=torch.float64)
    torch.testing.assert_close(xyz[0, :, 0], 2.0 * t + 0.5 * 1.5 * t * t)  # trapezoid exact for linear v


def test_speed_estimate_and_action_to_traj():
    space = _space()
    t = (torch.arange(16, dtype=torch.float64) - 15) * 0.1
    hist = torch.stack([7.0 * t, torch.zeros_like(t), torch.zeros_like(t)], -1)[None]
    rot = torch.eye(3, dtype=torch.float64).expand(1, 16, 3, 3)
    torch.testing.assert_close(space.estimate_speed(hist, rot), torch.tensor([7.0], dtype=torch.float64))
    # the normalized action for a = 0, k = 0 keeps the speed
    zero_phys = torch.zeros(1, 64, 2, dtype=torch.float64)
    xyz, _ = space.action_to_traj(space.normalize(zero_phys), hist, rot)
    torch.testing.assert_close(xyz[0, -1, 0], torch.tensor(7.0 * 6.4, dtype=torch.float64))
    big = torch.full((1, 64, 2), 1e3, dtype=torch.float64)
    phys = space.denormalize(big)
    assert float(phys[..., 0].max()) == 9.8 and float(phys[..., 1].max()) == 0.33


# ---------------------------------------------------------------- flow matching
@pytest.mark.parametrize("direction", ["noise_to_data", "data_to_noise"])
@pytest.mark.parametrize("grid", ["uniform", "cosine"])
def test_flow_schedule(direction, grid):
    s = flow_schedule(FlowConfig(steps=10, direction=direction, grid=grid))
    assert s.steps == 10
    total = sum(s.dts)
    assert math.isclose(total, 1.0 if direction == "noise_to_data" else -1.0, abs_tol=1e-12)
    assert s.times[0] == (0.0 if direction == "noise_to_data" else 1.0)


def test_bfloat16_keeps_rotary_frequencies_in_float32():
    model, _ = load_model("random:tiny", dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    for rot in (model.expert.rotary_emb, model.vlm.model.language_model.rotary_emb):
        assert rot.inv_freq.dtype == torch.float32
