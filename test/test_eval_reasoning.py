"""Reasoning agreement in `vla-ros eval`: the generated sentence scored against the driving
world's maneuver labels, recomputed here from the bag and the output bag."""
import json
from collections import Counter

from vla_ros.cli import main
from vla_ros.replay.bag_io import read_messages
from vla_ros.replay.labels import ACTION_WORDS, maneuver_of, read_maneuver_labels
from vla_ros.train.evaluation import reasoning_agreement


def test_maneuver_of_reads_every_action_phrase():
    for maneuver, phrase in ACTION_WORDS.items():
        assert maneuver_of(f"Lead vehicle slower; {phrase} and keep lane.") == maneuver
    assert maneuver_of("Road clear; follow the lead vehicle and keep lane.") == "follow"
    assert maneuver_of("left curve ahead") is None and maneuver_of("") is None


def test_eval_reports_agreement_against_sim_labels(tmp_path):
    bag = tmp_path / "drive"
    assert main(["sim", "record", "--out", str(bag), "--seed", "5", "--duration", "12", "--width", "192", "--height", "112"]) == 0
    labels = read_maneuver_labels(bag)
    assert len(labels) >= 100 and set(labels.maneuvers) <= set(ACTION_WORDS)
    out = tmp_path / "eval"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("image: {height: 112, width: 192}\n")
    args = ["eval", "--bag", str(bag), "--model", "random:tiny", "--config", str(cfg), "--out", str(out), "--limit", "4", "--no-progress",
            "--workers", "1", "--threads", "1", "--steps", "2"]  # the point is the text, not the flow or parallelism
    assert main([*args, "--reasoning"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    r = metrics["overall"]["reasoning"]
    # recompute from what the evaluation wrote: per tick, the trajectory (stamped t0) and the
    # sentence, in the same order; the label at that t0 from the recorded ground truth
    pred = out / "predictions.mcap"
    t0s = [m.msg.header.stamp.sec * 10**9 + m.msg.header.stamp.nanosec for m in read_messages(pred, ["/vla/trajectory"])]
    texts = [m.msg.data for m in read_messages(pred, ["/vla/reasoning"])]
    assert len(texts) == len(t0s) == r["ticks"] == 4
    assert r["agree"] == sum(maneuver_of(t) == labels.at(t0) for t, t0 in zip(texts, t0s))
    assert sum(e["ticks"] for e in r["by_maneuver"].values()) == 4
    assert r["agree"] == sum(e["agree"] for e in r["by_maneuver"].values())
    assert r["maneuver_agreement"] == r["agree"] / 4
    assert r["unparsed"] == sum(maneuver_of(t) is None for t in texts)
    assert "Reasoning names the recorded maneuver" in (out / "report.md").read_text()
    # the model card's recount from the two bags agrees, and lists each disagreement
    card = reasoning_agreement(pred, bag)
    assert (card["ticks"], card["agree"]) == (4, r["agree"])
    assert card["by_maneuver"] == {k: {"ticks": v["ticks"], "agree": v["agree"]} for k, v in r["by_maneuver"].items()}
    wrong = Counter(f"{labels.at(t0)} -> {maneuver_of(t) or 'unparsed'}" for t, t0 in zip(texts, t0s) if maneuver_of(t) != labels.at(t0))
    assert card["confusions"] == dict(wrong) and sum(wrong.values()) == 4 - r["agree"]
    # without reasoning there is nothing to score
    assert main([*args, "--no-reasoning"]) == 0
    assert "reasoning" not in json.loads((out / "metrics.json").read_text())["overall"]
