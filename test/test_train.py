"""vla_ros.train: tokenizer, action targets, example extraction with skip counts, training, resume."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vla_ros.config import load_config
from vla_ros.model.action_space import ActionStats, UnicycleAccelCurvature
from vla_ros.model.config import ActionSpaceConfig, PromptConfig
from vla_ros.replay.pattern_bag import PatternBagSpec, write_pattern_bag
from vla_ros.sim.labels import ACTIONS
from vla_ros.sim.record import RecordSpec, record
from vla_ros.train.actions import invert_path, roundtrip_error
from vla_ros.train.bpe import train_bpe
from vla_ros.train.dataset import EmptyTrainingSetError, extract_bag
from vla_ros.replay.labels import maneuver_of
from vla_ros.train.labels import grammar_corpus
from vla_ros.train.trainer import Trainer, TrainOptions, sampling_weights

# A model small enough to train a few steps in seconds; same code paths as drive-tiny.
TINY = {"vlm": {"text_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                                "num_key_value_heads": 1},
                "vision_config": {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 1, "out_hidden_size": 64}}}


@pytest.fixture(scope="module")
def sim_bag(tmp_path_factory) -> Path:
    """9 s of the driving world with labels: a handful of ticks with a full 6.4 s future."""
    out = tmp_path_factory.mktemp("train") / "sim"
    record(out, load_config(None), RecordSpec(seed=5, duration_s=9.0, width=128, height=72))
    return out


def _opts(tmp: Path, bags: list[Path], steps: int, **kw) -> TrainOptions:
    return TrainOptions(bags=[str(b) for b in bags], out=str(tmp / "model"), steps=steps, batch_size=4, warmup=2,
                        save_every=1, work_dir=str(tmp / "work"), cache_dir=str(tmp.parent / "cache"),
                        model_overrides=TINY, progress=False, workers=1, **kw)


def test_tokenizer_round_trip_and_specials():
    tok = train_bpe(PromptConfig(), 1000)
    corpus = grammar_corpus()
    for s in corpus[::7]:
        ids = tok.encode(s)
        assert tok.decode(ids) == s
        assert len(ids) <= 12  # the merges cover the grammar's phrases
    assert tok.decode(tok.encode("An unseen sentence, 123!")) == "An unseen sentence, 123!"  # byte-level fallback
    ids = tok.ids
    assert tok.tokenizer.token_to_id("<i999>") == ids.traj_first + 999
    assert tok.decode([ids.reasoning_end, *tok.encode("Road clear")]) == "Road clear"  # specials skipped
    again = train_bpe(PromptConfig(), 1000)
    assert again.tokenizer.to_str() == tok.tokenizer.to_str()  # deterministic


def test_maneuver_parsing_covers_every_action():
    for action in ACTIONS:
        s = next(x for x in grammar_corpus() if maneuver_of(x) == action)
        assert maneuver_of(s) == action
    assert maneuver_of("Lead vehicle slower; follow the lead vehicle and keep lane.") == "follow"
    assert maneuver_of("nonsense") is None


def test_balanced_sampling_weights():
    labels = ["keep_speed"] * 90 + ["follow"] * 9 + ["stop"]
    assert sampling_weights(labels, 0.0) is None  # uniform draw, as before the option existed
    equal = sampling_weights(labels, 1.0)
    mass = {m: float(equal[np.asarray(labels) == m].sum()) for m in set(labels)}
    assert all(v == pytest.approx(1 / 3) for v in mass.values())
    half = sampling_weights(labels, 0.5)
    assert half.sum() == pytest.approx(1.0)
    # Per example, a maneuver 90x rarer is drawn sqrt(90)x more often.
    assert half[-1] / half[0] == pytest.approx(math.sqrt(90))


def test_action_inversion_round_trip():
    space = UnicycleAccelCurvature(ActionSpaceConfig(), ActionStats())
    b, t, dt = 3, 64, 0.1
    k = torch.arange(t, dtype=torch.float64) * dt
    accel = torch.stack([0.8 * torch.sin(0.3 * k), -1.5 * torch.ones(t) * (k < 3), 0.2 * torch.ones(t)])
    curv = torch.stack([0.02 * torch.cos(0.2 * k), torch.zeros(t), -0.01 * torch.ones(t)])
    truth = torch.stack([accel, curv], dim=-1)  # (B, T, 2)
    v0 = torch.tensor([10.0, 8.0, 15.0], dtype=torch.float64)
    # Straight history at constant speed ending at the origin: the speed estimate is exact.
    hist_t = (torch.arange(16, dtype=torch.float64) - 15) * dt
    hist_xyz = torch.zeros(b, 16, 3, dtype=torch.float64)
    hist_xyz[..., 0] = v0[:, None] * hist_t
    hist_rot = torch.eye(3, dtype=torch.float64).expand(b, 16, 3, 3)
    fut_xyz, fut_rot = space.integrate(truth, v0, torch.zeros(b, 3, dtype=torch.float64), torch.zeros(b, dtype=torch.float64))
    actions = invert_path(space, fut_xyz, fut_rot, hist_xyz, hist_rot)
    err = roundtrip_error(space, actions, fut_xyz, hist_xyz, hist_rot)
    assert float(err.max()) < 0.02
    # The smoothness term rounds the braking step off a little; on average the actions match.
    assert float((actions[..., 0] - truth[..., 0]).abs().mean()) < 0.1
    assert float((actions[..., 1] - truth[..., 1]).abs().mean()) < 2e-3


def test_extraction_skips_ticks_without_labels_or_futures(tmp_path):
    bag = tmp_path / "pattern"
    write_pattern_bag(bag, load_config(None), PatternBagSpec(duration_s=3.0, height=72, width=128))
    space = UnicycleAccelCurvature(ActionSpaceConfig(), ActionStats())
    ex = extract_bag(bag, load_config(None), (64, 128), space)
    assert len(ex) == 0
    assert ex.skipped.get("future_short", 0) > 0  # 3 s of odometry: no tick has 6.4 s of future
    with pytest.raises(EmptyTrainingSetError, match="no usable training ticks"):
        Trainer(_opts(tmp_path, [bag], 1), load_config(None), log=lambda s: None)


def test_extraction_counts_missing_labels(sim_bag, tmp_path):
    # The same sim bag without its /sim/ground_truth topic: every tick with a future lacks a label.
    from vla_ros.replay.bag_io import BagWriter, read_messages

    stripped = tmp_path / "nolabels"
    with BagWriter(stripped) as w:
        for m in read_messages(sim_bag):
            if m.topic != "/sim/ground_truth" and m.msg is not None:
                w.write(m.topic, m.msg, m.log_time_ns)
    space = UnicycleAccelCurvature(ActionSpaceConfig(), ActionStats())
    ex = extract_bag(stripped, load_config(None), (64, 128), space)
    assert len(ex) == 0 and ex.skipped["no_label"] > 0


def test_train_export_load_and_resume(sim_bag, tmp_path):
    from vla_ros.runtime.policy import Policy
    from vla_ros.train.state import has_state

    logs: list[str] = []
    full = Trainer(_opts(tmp_path / "a", [sim_bag], 3, seed=3), load_config(None), log=logs.append)
    assert len(full.data) > 0 and float(full.data.roundtrip_m.max()) < 0.1
    out = full.run()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "action_stats.json", "MODEL_CARD.md", "training.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "training.json").read_text())
    assert summary["steps"] == 3 and summary["examples"] == len(full.data)
    assert "future_short" in summary["skipped"]
    stats = ActionStats.load(out / "action_stats.json")
    assert stats.mean == pytest.approx(full.stats.mean)
    policy = Policy.from_pretrained(out)
    assert policy.image_size_hw == (64, 128)
    # Interrupted after step 2, resumed to 3: the same weights as the uninterrupted run.
    part = Trainer(_opts(tmp_path / "b", [sim_bag], 2, seed=3), load_config(None), log=logs.append)
    part.run()
    assert has_state(Path(part.opts.work_dir))
    resumed = Trainer(_opts(tmp_path / "b", [sim_bag], 3, seed=3, resume=True), load_config(None), log=logs.append)
    assert resumed.step == 2
    resumed.run()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any("resumed" in s for s in logs)


def test_cli_errors(tmp_path, capsys):
    from vla_ros.cli import main

    assert main(["train", "--bags", str(tmp_path / "nothing*"), "--out", str(tmp_path / "m")]) == 2
    assert "matches no bag" in capsys.readouterr().err
    bag = tmp_path / "pattern"
    write_pattern_bag(bag, load_config(None), PatternBagSpec(duration_s=2.0, height=72, width=128))
    assert main(["train", "--bags", str(bag), "--out", str(tmp_path / "m"), "--workers", "1", "--no-progress",
                 "--work-dir", str(tmp_path / "w")]) == 1
    assert "no usable training ticks" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_time_budget_fits_the_step_count():
    from vla_ros.train.trainer import fitted_steps
    assert fitted_steps(10_000, 50, per_step_s=0.1, remaining_s=60.0) == 650
    assert fitted_steps(300, 50, per_step_s=0.1, remaining_s=60.0) == 300  # never more than asked for
    assert fitted_steps(10_000, 50, per_step_s=0.1, remaining_s=-5.0) == 50  # budget already spent: stop now


def test_time_budget_stops_early_and_a_resumed_run_keeps_the_count(sim_bag, tmp_path):
    from vla_ros.train.trainer import BUDGET_FIT_STEP

    def opts(**kw) -> TrainOptions:
        return TrainOptions(bags=[str(sim_bag)], out=str(tmp_path / "model"), steps=5000, batch_size=2, save_every=25,
                            work_dir=str(tmp_path / "work"), cache_dir=str(tmp_path / "cache"), model_overrides=TINY,
                            progress=False, workers=1, **kw)

    logs: list[str] = []
    trainer = Trainer(opts(time_budget_s=1e-3), load_config(None), log=logs.append)  # spent by the fit step
    out = trainer.run()
    assert trainer.step == BUDGET_FIT_STEP and json.loads((out / "training.json").read_text())["steps"] == BUDGET_FIT_STEP
    assert any(f"{BUDGET_FIT_STEP} steps instead of 5000" in s for s in logs)
    # Resumed without the flag: the fitted count holds, so nothing is left to train.
    resumed = Trainer(opts(resume=True), load_config(None), log=logs.append)
    assert resumed.step == BUDGET_FIT_STEP and resumed.opts.steps == BUDGET_FIT_STEP


def test_model_card_compacts_consecutive_bags_into_a_brace_range_the_shell_expands_back():
    import argparse
    import shlex
    import subprocess

    from vla_ros.train.command import add_arguments
    from vla_ros.train.model_card import compact_command

    long = ("vla-ros train " + " ".join(f"--bags out/d/train/seed{s}" for s in range(1000, 1080))
            + " --val-bags out/d/heldout/seed2001 --bags 'my bags/x1' --bags 'my bags/x2' --bags 'my bags/x3' --out m")
    short = compact_command(long)
    assert short.startswith("vla-ros train --bags out/d/train/seed{1000..1079} --val-bags out/d/heldout/seed2001 ")
    assert "--bags 'my bags/x1' --bags 'my bags/x2'" in short  # paths that need quoting stay as they were
    assert compact_command("vla-ros train --bags a/s1 --bags a/s2 --out m") == "vla-ros train --bags a/s1 --bags a/s2 --out m"
    # what bash makes of the short form parses to the same bags, in the same order, as the long one
    expanded = subprocess.run(["bash", "-c", 'printf "%s\\n" ' + short.removeprefix("vla-ros train ")],
                              capture_output=True, text=True, check=True).stdout.splitlines()
    p = argparse.ArgumentParser()
    add_arguments(p)
    a, b = p.parse_args(shlex.split(long)[2:]), p.parse_args(expanded)
    assert a.bags == b.bags and len(a.bags) == 83 and a.val_bags == b.val_bags == ["out/d/heldout/seed2001"]


def test_model_card_reports_the_held_out_evaluations_against_the_targets(sim_bag, tmp_path):
    from vla_ros.cli import main
    from vla_ros.train.evaluation import summarize

    out = Trainer(_opts(tmp_path, [sim_bag], 2, seed=1), load_config(None), log=lambda s: None).run()
    base = ["eval", "--bag", str(sim_bag), "--model", str(out), "--limit", "3", "--no-progress", "--workers", "1"]
    runs = {"plain": ["--no-reasoning"], "grey": ["--no-reasoning", "--ablate", "cameras"], "reasoning": ["--reasoning"],
            "sampled": ["--no-reasoning", "--noise-scale", "1"]}
    for name, extra in runs.items():
        assert main([*base, *extra, "--out", str(tmp_path / name)]) == 0
    res = summarize(out, tmp_path / "plain", tmp_path / "grey", tmp_path / "reasoning", None, "the eval command", tmp_path / "sampled")

    def overall(name: str) -> dict:
        return json.loads((tmp_path / name / "metrics.json").read_text())["overall"]

    m, rows = overall("plain"), {r["name"]: r for r in res["rows"]}
    ade_cv = m["model"]["ade"] / m["constant_velocity"]["ade"]
    assert rows["ADE / constant velocity"]["value"].startswith(f"{ade_cv:.3f} ") and rows["ADE / constant velocity"]["met"] == (ade_cv <= 0.7)
    fde_cvy = m["model"]["fde"] / m["constant_velocity_yaw_rate"]["fde"]
    assert rows["FDE / CV + yaw rate"]["value"].startswith(f"{fde_cvy:.3f} ")
    grey = overall("grey")["model"]["ade"] / m["model"]["ade"]
    assert rows["ADE with grey cameras / ADE"]["value"].startswith(f"{grey:.3f} ") and rows["ADE with grey cameras / ADE"]["met"] == (grey >= 1.2)
    r = overall("reasoning")["reasoning"]
    assert rows["reasoning names the labelled maneuver"]["value"] == f"{r['agree'] / r['ticks']:.1%} of {r['ticks']} ticks"
    assert sum(res["reasoning_confusions"].values()) == r["ticks"] - r["agree"]
    sampled = overall("sampled")["model"]["ade"]
    assert rows["ADE with `--noise-scale 1`, one sample of the learned distribution (m)"]["value"].startswith(f"{sampled:.3f} ")
    assert sampled != m["model"]["ade"]  # the plain run is the deterministic default, the other one sampled
    card = (out / "MODEL_CARD.md").read_text()
    assert "`the eval command`" in card and f"| ADE / constant velocity | {rows['ADE / constant velocity']['value']} | <= 0.70 |" in card
