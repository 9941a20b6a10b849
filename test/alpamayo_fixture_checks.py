"""Integrity checks shared by the Alpamayo golden-fixture tests (R1: test_alpamayo_fixture.py,
1.5: test_alpamayo1_5_fixture.py). They check a fixture's own consistency, not vla_ros."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open


def check_manifest(fixture: Path, meta: dict, required: tuple[str, ...], max_bytes: int = 5_000_000) -> None:
    """Every listed file is there with its recorded sha256, nothing unlisted, the size stays small."""
    listed = meta["files"]
    for name in required:
        assert name in listed, f"{name} missing from the manifest"
    for name, digest in listed.items():
        assert hashlib.sha256((fixture / name).read_bytes()).hexdigest() == digest, f"{name} changed since it was made"
    present = {str(p.relative_to(fixture)) for p in fixture.rglob("*") if p.is_file()}
    assert present - {"meta.json"} == set(listed)
    assert len(meta["reference"]["commit"]) == 40
    total = sum((fixture / n).stat().st_size for n in present)
    assert total < max_bytes, f"fixture grew to {total / 1e6:.1f} MB"


def weight_shapes(fixture: Path) -> dict[str, tuple[int, ...]]:
    """model/model.safetensors: name -> shape (every tensor checked finite)."""
    with safe_open(str(fixture / "model" / "model.safetensors"), "pt") as f:
        assert all(torch.isfinite(f.get_tensor(k)).all() for k in f.keys())
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def check_weight_layout(shapes: dict, config: dict) -> None:
    """The VLM, expert and action projections the config describes."""
    assert not any(k.startswith("expert.embed_tokens") for k in shapes)  # the expert takes embeddings
    vocab = config["vocab_size"]
    hidden = shapes["vlm.model.language_model.embed_tokens.weight"][1]
    assert shapes["vlm.model.language_model.embed_tokens.weight"] == (vocab, hidden)
    assert shapes["vlm.lm_head.weight"] == (vocab, hidden)
    assert shapes["action_out_proj.weight"] == (2, shapes["expert.norm.weight"][0])
    fourier = config["action_in_proj_cfg"]["num_fourier_feats"]
    width = config["action_in_proj_cfg"]["hidden_size"]
    assert shapes["action_in_proj.encoder.trunk.0.weight"] == (width, 3 * fourier)  # accel, curvature, time


def tokenizer_ids(fixture: Path) -> dict[str, int]:
    """model/tokenizer.json: token -> id, the BPE vocabulary and the added tokens."""
    tok = json.loads((fixture / "model" / "tokenizer.json").read_text(encoding="utf-8"))
    ids = dict(tok["model"]["vocab"])
    ids.update({t["content"]: t["id"] for t in tok["added_tokens"]})
    return ids


def check_token_layout(ids: dict[str, int], config: dict, meta: dict) -> None:
    """Trajectory tokens <i0>.. at traj_token_start_idx, the markers the config records, history bins after
    the future tokenizer's."""
    start = config["traj_token_start_idx"]
    assert ids["<i0>"] == start and ids[f"<i{config['traj_vocab_size'] - 1}>"] == start + config["traj_vocab_size"] - 1
    for key, token in (("future_start", "<|traj_future_start|>"), ("history", "<|traj_history|>"),
                       ("history_start", "<|traj_history_start|>"), ("future_end", "<|traj_future_end|>")):
        assert ids[token] == config["traj_token_ids"][key]
    assert max(ids.values()) + 1 == config["vocab_size"]
    assert meta["tokens"]["hist_token_start_idx"] == start + config["traj_tokenizer_cfg"]["num_bins"]


def check_history_fused(before: torch.Tensor, after: torch.Tensor, config: dict, hist_token_start_idx: int) -> None:
    """The 48 <|traj_history|> placeholders, and only they, hold history bins after fusing."""
    placeholder = before == config["traj_token_ids"]["history"]
    assert int(placeholder.sum()) == config["tokens_per_history_traj"]
    assert torch.equal(before[~placeholder], after[~placeholder])
    hist = after[placeholder] - hist_token_start_idx
    assert ((hist >= 0) & (hist < config["hist_traj_tokenizer_cfg"]["num_bins"])).all()


def check_euler_steps(ref: dict, steps: int) -> None:
    """Noise to data: t on linspace(0, 1), x_{k+1} = x_k + dt v_k, the action the last step's result."""
    x, t, v = ref["flow_x"], ref["flow_t"], ref["flow_v"]
    assert x.shape[0] == t.shape[0] == v.shape[0] == steps
    grid = torch.linspace(0.0, 1.0, steps + 1)  # t rises from noise (0) to data (1)
    assert torch.allclose(t, grid[:-1], atol=1e-7)
    assert torch.equal(x[0], ref["noise"])
    assert torch.equal(ref["flow_t_full"].reshape(steps, -1), t[:, None].expand(steps, x.shape[1]))
    for k in range(steps - 1):
        torch.testing.assert_close(x[k + 1], x[k] + (grid[k + 1] - grid[k]) * v[k], rtol=0, atol=1e-6)
    torch.testing.assert_close(ref["action"], x[-1] + (grid[-1] - grid[-2]) * v[-1], rtol=0, atol=1e-6)
    assert v.abs().mean() > 1e-2  # the velocities move x: a fixture of zeros would prove nothing


def check_greedy_rollout(ref: dict, prompt_ids: torch.Tensor, config: dict, pad_token_id: int, stops: bool) -> int:
    """Greedy tokens are the argmax of the trajectory-masked logits; the prefix the expert sees ends at
    the first <|traj_future_start|> (or, without one, after the last token); -> the cache length."""
    seq, logits = ref["sequences_raw"], ref["generate_logits"].clone()
    samples, prompt_len = seq.shape[0], prompt_ids.shape[1]
    assert torch.equal(seq[:, :prompt_len], prompt_ids.expand(samples, -1))
    start, n = config["traj_token_start_idx"], config["traj_vocab_size"]
    logits[..., start:start + n] = float("-inf")  # the reference masks trajectory tokens while reasoning
    assert torch.equal(seq[:, prompt_len:], logits.argmax(-1))
    eos = config["traj_token_ids"]["future_start"]
    prefix, cache_len = ref["prefix_len"], int(ref["cache_len"])
    assert cache_len == seq.shape[1] - 1  # the last generated token is never fed
    for s in range(samples):
        if stops:  # prefix: through <|traj_future_start|>, padding after it
            assert int(seq[s, prefix[s] - 1]) == eos and not (seq[s, prompt_len:prefix[s] - 1] == eos).any()
            assert (ref["sequences"][s, prefix[s]:] == pad_token_id).all()
        else:  # no <|traj_future_start|>: positions continue after the last token
            assert not (seq[s] == eos).any() and int(prefix[s]) == seq.shape[1]
            assert torch.equal(ref["sequences"][s], seq[s])
    return cache_len


def check_expert_view(visible: torch.Tensor, position_ids: torch.Tensor, prefix: torch.Tensor, cache_len: int,
                      rope_deltas: torch.Tensor, n_waypoints: int) -> None:
    """The expert attends to the cache up to its prefix and to all action tokens; its positions continue
    after the prefix, shifted by the VLM's rope delta, the same on all three mrope axes."""
    assert visible.shape == (prefix.shape[0], cache_len + n_waypoints)
    for s in range(prefix.shape[0]):
        seen = visible[s].bool()
        assert seen[:min(int(prefix[s]), cache_len)].all() and seen[cache_len:].all()
        assert not seen[int(prefix[s]):cache_len].any()
    expected = torch.arange(n_waypoints)[None, :] + rope_deltas + prefix[:, None]  # (S, T)
    assert torch.equal(position_ids, expected[None].expand(3, -1, -1))


def check_trajectory_outputs(ref: dict, samples: int, n_waypoints: int) -> None:
    assert ref["pred_xyz"].shape == (1, 1, samples, n_waypoints, 3)
    assert ref["pred_rot"].shape == (1, 1, samples, n_waypoints, 3, 3)
    assert torch.isfinite(ref["pred_xyz"]).all() and torch.isfinite(ref["pred_rot"]).all()
    rot = ref["pred_rot"].reshape(-1, 3, 3)
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), torch.eye(3).expand_as(rot), rtol=0, atol=1e-5)


def check_budget_at_stop(ref: dict, zero: dict, meta: dict, case: str, prompt_len: int) -> int:
    """A run whose <|traj_future_start|> was sampled in the budget's last slot against the same call with
    the full budget (`zero`): generate ran no forward for it, so the cache lacks its key, while the
    expert's positions still continue after it. Returns the budget."""
    budget = meta["cases"][case]["max_generation_length"]
    assert budget < meta["call"]["max_generation_length"]
    assert torch.equal(ref["sequences_raw"][0], zero["sequences_raw"][0, :prompt_len + budget])
    assert int(ref["sequences_raw"][0, -1]) == meta["tokens"]["special"]["traj_future_start"]
    assert int(ref["cache_len"]) == prompt_len + budget - 1 == int(zero["cache_len"]) - 1
    assert int(ref["prefix_len"][0]) == prompt_len + budget == int(zero["prefix_len"][0])
    assert not ref["noise"].any()
    return budget
