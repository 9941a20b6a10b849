"""Bad input to the runtime: specific errors naming what is wrong; NaN output never returned."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vla_ros.model import CheckpointError, UnknownPresetError
from vla_ros.runtime import (KVCapacityError, NonFiniteOutputError, Policy, PolicyInputError, PolicyInputs,
                             StaleContextError)
from vla_ros.runtime.tools.synthetic import synthetic_inputs


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.from_pretrained("random:tiny")


@pytest.fixture(scope="module")
def tick() -> PolicyInputs:
    return synthetic_inputs(0, height=64, width=96)


def test_wrong_image_count(policy, tick):
    bad = dataclasses.replace(tick, images=tick.images[:3], stamps_ns=None, camera_names=None)
    with pytest.raises(PolicyInputError, match="4 cameras x 4 frames = 16 images, got 3 x 4"):
        policy.prefill(bad)


def test_wrong_image_size_or_dtype(policy, tick):
    with pytest.raises(PolicyInputError, match="too small"):
        policy.prefill(dataclasses.replace(tick, images=tick.images[:, :, :8, :8]))
    with pytest.raises(PolicyInputError, match="uint8"):
        policy.prefill(dataclasses.replace(tick, images=tick.images.astype(np.float32)))
    with pytest.raises(PolicyInputError, match=r"\(views, frames, H, W, 3\)"):
        policy.prefill(dataclasses.replace(tick, images=tick.images[..., 0]))


def test_bad_history(policy, tick):
    with pytest.raises(PolicyInputError, match=r"history xyz must have shape \(16, 3\)"):
        policy.prefill(dataclasses.replace(tick, history_xyz=tick.history_xyz[:8]))
    with pytest.raises(PolicyInputError, match=r"history rot must have shape \(16, 3, 3\)"):
        policy.prefill(dataclasses.replace(tick, history_rot=tick.history_rot[:, :2]))
    xyz = np.array(tick.history_xyz, copy=True)
    xyz[4, 0] = np.nan
    with pytest.raises(PolicyInputError, match="NaN"):
        policy.prefill(dataclasses.replace(tick, history_xyz=xyz))


def test_bad_noise_and_samples(policy, tick):
    ctx = policy.prefill(tick)
    with pytest.raises(PolicyInputError, match="noise must be"):
        policy.denoise(ctx, noise=torch.zeros(1, 10, 2))
    with pytest.raises(PolicyInputError, match="NaN"):
        policy.denoise(ctx, noise=torch.full((1, 64, 2), float("nan")))
    with pytest.raises(PolicyInputError, match="max_samples"):
        policy.denoise(ctx, samples=policy.max_samples + 1)


def test_stale_context_and_capacity(policy, tick):
    old = policy.prefill(tick, reasoning_budget=0)
    with pytest.raises(KVCapacityError, match="reasoning"):
        policy.reason(old, max_tokens=200)
    policy.prefill(tick)
    with pytest.raises(StaleContextError):
        policy.denoise(old)


def test_non_finite_output_is_raised_not_returned(tick):
    pol = Policy.from_pretrained("random:tiny")
    with torch.no_grad():
        pol.model.action_out_proj.bias.fill_(float("nan"))
    with pytest.raises(NonFiniteOutputError, match="NaN or inf"):
        pol.act(tick, steps=2)


def test_unknown_preset_backend_and_path(tmp_path):
    with pytest.raises(UnknownPresetError, match="random:huge"):
        Policy.from_pretrained("random:huge")
    with pytest.raises(ValueError, match="backend 'tensorrt'"):
        Policy.from_pretrained("random:tiny", backend="tensorrt")
    with pytest.raises(CheckpointError, match="does not exist"):
        Policy.from_pretrained(str(tmp_path / "missing"))
    with pytest.raises(PolicyInputError, match="FrameStack"):
        Policy.from_pretrained("random:tiny").prefill(42)
