"""The batched vision tower (vla_ros/model/vision_batched.py) against transformers' packed one."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vla_ros.model import build_preset, load_model
from vla_ros.model.vision_batched import image_features

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "drive-tiny"


@pytest.fixture(scope="module")
def shipped():
    model, _ = load_model(SHIPPED)
    return model


def _images(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _assert_same(ours, theirs) -> None:
    assert len(ours.pooler_output) == len(theirs.pooler_output)
    for a, b in zip(ours.pooler_output, theirs.pooler_output):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert len(ours.deepstack_features) == len(theirs.deepstack_features) > 0
    for da, db in zip(ours.deepstack_features, theirs.deepstack_features):
        for a, b in zip(da, db):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_batched_tower_equals_the_packed_one_on_the_shipped_model(shipped):
    vm = shipped.vlm.model
    pixels, grid = shipped.image_preprocessor(_images(16, 320, 576))
    with torch.no_grad():
        _assert_same(image_features(vm, pixels, grid), vm.get_image_features(pixels, grid))


def test_batched_tower_gradients_equal_the_packed_ones():
    model, _ = build_preset("random:tiny")
    vm = model.vlm.model
    pixels, grid = model.image_preprocessor(_images(6, 240, 320, seed=1))
    grads = []
    for fn in (image_features, vm.get_image_features):
        model.zero_grad(set_to_none=True)
        out = fn(vm, pixels, grid) if fn is image_features else fn(pixels, grid)
        (torch.cat(out.pooler_output).square().mean() + sum(torch.cat(d).mean() for d in out.deepstack_features)).backward()
        grads.append({n: p.grad.clone() for n, p in vm.visual.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_images_of_different_sizes_take_the_packed_path(shipped, monkeypatch):
    vm = shipped.vlm.model
    p1, g1 = shipped.image_preprocessor(_images(2, 320, 576))
    p2, g2 = shipped.image_preprocessor(_images(1, 640, 640, seed=2))
    assert not torch.equal(g1[0], g2[0])
    pixels, grid = torch.cat([p1, p2]), torch.cat([g1, g2])
    packed_calls = []
    packed = vm.get_image_features
    monkeypatch.setattr(vm, "get_image_features", lambda *a, **k: packed_calls.append(1) or packed(*a, **k))
    with torch.no_grad():
        ours = image_features(vm, pixels, grid)
        assert packed_calls == [1]  # mixed sizes went to transformers' packed tower
        image_features(vm, p1, g1)
        assert packed_calls == [1]  # same-size images did not
        theirs = packed(pixels, grid)
    assert [t.shape[0] for t in ours.pooler_output] == [int(g.prod()) // 4 for g in grid]
    _assert_same(ours, theirs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batched_tower_on_cuda_in_bf16_equals_the_packed_one():
    model, _ = load_model(SHIPPED, device="cuda", dtype=torch.bfloat16)
    vm = model.vlm.model
    pixels, grid = model.image_preprocessor(_images(16, 320, 576), device="cuda")
    with torch.no_grad():
        ours, theirs = image_features(vm, pixels.bfloat16(), grid), vm.get_image_features(pixels.bfloat16(), grid)
    for a, b in zip(ours.pooler_output, theirs.pooler_output):
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)
