"""The batched vision tower (vla_ros/model/vision_batched.py) against transformers' packed one."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_ros.model import build_preset, load_model
from vla_ros.model.vision_batched import image_features


@pytest.fixture(scope="module")
def shipped():
    model, _ = load_model("models/drive-tiny")
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


def test_images_of_different_sizes_take_the_packed_path(shipped):
    vm = shipped.vlm.model
    p1, g1 = shipped.image_preprocessor(_images(2, 320, 576))
    p2, g2 = shipped.image_preprocessor(_images(1, 640, 640, seed=2))
    assert not torch.equal(g1[0], g2[0])
    pixels, grid = torch.cat([p1, p2]), torch.cat([g1, g2])
    with torch.no_grad():
        ours = image_features(vm, pixels, grid)
        theirs = vm.get_image_features(pixels, grid)
    assert [t.shape[0] for t in ours.pooler_output] == [int(g.prod()) // 4 for g in grid]
    _assert_same(ours, theirs)
