"""Checkpoint I/O: bit-exact round trip; missing/unexpected/mismatched keys named; pickles refused."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from vla_ros.model import CheckpointError, build_preset, load_checkpoint, load_model, save_checkpoint


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, tok = build_preset("random:tiny")
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(model, tok, path)
    return model, tok, path


def _copy(src, tmp_path):
    dst = tmp_path / "ck"
    shutil.copytree(src, dst)
    return dst


def test_directory_layout(saved):
    _, _, path = saved
    assert {p.name for p in path.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json", "action_stats.json", "README.md"}
    assert json.loads((path / "config.json").read_text())["architecture"] == "kv_expert"


def test_round_trip_is_bit_exact(saved):
    model, tok, path = saved
    loaded, tok2 = load_model(str(path))
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert tok2.ids == tok.ids and tok2.encode("hello <i3>") == tok.encode("hello <i3>")
    x, t = torch.randn(2, 64, 2), torch.tensor([0.3, 0.7])
    with torch.inference_mode():
        assert torch.equal(model.action_in_proj(x, t), loaded.action_in_proj(x, t))
    # saving the loaded model again stores the same tensors, bit for bit
    again = path.parent / "again"
    save_checkpoint(loaded, tok2, again)
    first, second = load_file(str(path / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_load_in_bfloat16(saved):
    _, _, path = saved
    model, _ = load_checkpoint(path, dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16


def test_missing_and_unexpected_keys_are_named(saved, tmp_path):
    _, _, path = saved
    ck = _copy(path, tmp_path)
    state = load_file(str(ck / "model.safetensors"))
    del state["expert.layers.1.mlp.up_proj.weight"]
    state["expert.layers.9.extra"] = torch.zeros(2)
    save_file(state, str(ck / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(ck)
    assert "missing keys: expert.layers.1.mlp.up_proj.weight" in str(err.value)
    assert "unexpected keys: expert.layers.9.extra" in str(err.value)


def test_shape_mismatch_is_named(saved, tmp_path):
    _, _, path = saved
    ck = _copy(path, tmp_path)
    state = load_file(str(ck / "model.safetensors"))
    state["action_out_proj.weight"] = torch.zeros(3, 256)
    save_file(state, str(ck / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"action_out_proj.weight \(file \[3, 256\], model \[2, 256\]\)"):
        load_checkpoint(ck)


def test_pickles_are_refused(saved, tmp_path):
    _, _, path = saved
    ck = _copy(path, tmp_path)
    (ck / "model.safetensors").unlink()
    (ck / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="pickled checkpoints are refused"):
        load_checkpoint(ck)
    pt = tmp_path / "weights.pt"
    pt.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="pickled"):
        load_checkpoint(pt)


def test_incomplete_or_corrupt_directories(saved, tmp_path):
    _, _, path = saved
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    ck = _copy(path, tmp_path)
    (ck / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        load_checkpoint(ck)
    ck2 = tmp_path / "ck2"
    shutil.copytree(path, ck2)
    (ck2 / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(ck2)
    ck3 = tmp_path / "ck3"
    shutil.copytree(path, ck3)
    (ck3 / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(ck3)
