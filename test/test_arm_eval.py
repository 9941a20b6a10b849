"""Arm bags and open-loop evaluation of action chunks: `vla-ros pattern-bag --arm` writes a real bag,
`vla-ros eval` runs the LeRobot pi0 fixture on it through the real CLI, sensing pipeline and policy."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rosbags.highlevel import AnyReader
from rosbags.interfaces import QosDurability

from vla_ros.cli import main
from vla_ros.config import load_config
from vla_ros.replay.arm_pattern_bag import JointMotion, joint_bounds
from vla_ros.replay.bag_io import bag_info, read_messages
from vla_ros.replay.command_track import CommandTrack
from vla_ros.replay.ground_truth import FutureUnavailable
from vla_ros.ros import messages

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "arm.yaml"
MODEL = ROOT / "test" / "fixtures" / "lerobot_pi0_tiny"
START_S, DURATION_S, LAG_S, DT = 1000.0, 2.5, 0.03, 0.02
CHANGE_S = 1.2
# Far beyond the fixture's 48-token budget.
LONG = "pick up the red cube from the table and place it carefully into the blue box on the left " * 6
SHORT = "follow the pattern"
FAST = ["--workers", "1", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def arm_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bag = tmp_path_factory.mktemp("armbag") / "arm"
    rc = main(["pattern-bag", "--arm", "--config", str(CONFIG), "--out", str(bag), "--duration", str(DURATION_S),
               "--instruction", SHORT, "--instruction-change", str(CHANGE_S), LONG, "--bad-joint-states", "25",
               "--tracking-lag", str(LAG_S)])
    assert rc == 0
    return bag


@pytest.fixture(scope="module")
def evaluation(arm_bag: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("armeval")
    rc = main(["eval", "--bag", str(arm_bag), "--config", str(CONFIG), "--model", str(MODEL), "--out", str(out), *FAST])
    assert rc == 0
    return out, json.loads((out / "metrics.json").read_text())


def motion() -> JointMotion:
    lo, hi = joint_bounds(load_config(CONFIG))
    return JointMotion(lo, hi)


def test_arm_bag_topics_rates_and_latched_instruction(arm_bag: Path) -> None:
    info = bag_info(arm_bag)
    n = lambda hz: int(DURATION_S * hz) + 1  # noqa: E731
    assert info.message_counts == {
        "/cameras/top/image_raw/compressed": n(30), "/cameras/wrist/image_raw/compressed": n(30), "/joint_states": n(100),
        "/joint_trajectory_controller/joint_trajectory": n(50), "/vla/instruction": 2}
    reader = AnyReader([arm_bag])
    reader.open()
    try:
        qos = {c.topic: c.ext.offered_qos_profiles[0] for c in reader.connections}
    finally:
        reader.close()
    assert qos["/vla/instruction"].durability == QosDurability.TRANSIENT_LOCAL and qos["/vla/instruction"].depth == 1
    assert qos["/joint_states"].durability == QosDurability.VOLATILE
    texts = [(m.log_time_ns, m.msg.data) for m in read_messages(arm_bag, ["/vla/instruction"])]
    assert texts == [(round(START_S * 1e9), SHORT), (round((START_S + CHANGE_S) * 1e9), LONG)]


def test_arm_bag_commands_lead_the_joint_states_along_the_known_motion(arm_bag: Path) -> None:
    ref = motion()
    names = load_config(CONFIG).arm.joint_names
    for m in read_messages(arm_bag, ["/joint_trajectory_controller/joint_trajectory"]):
        t = m.log_time_ns / 1e9 - START_S
        assert list(m.msg.joint_names) == list(names)
        (point,) = m.msg.points
        assert point.time_from_start.nanosec == round(DT * 1e9)
        np.testing.assert_allclose(point.positions, ref.positions(t + DT), atol=1e-12)
    bad = 0
    for m in read_messages(arm_bag, ["/joint_states"]):
        t = m.log_time_ns / 1e9 - START_S
        listed = list(m.msg.name)
        pos = dict(zip(listed, m.msg.position))
        if len(listed) < len(names) or not np.all(np.isfinite(m.msg.position)):
            bad += 1
            continue
        assert listed == list(names[::-1])  # not the config's order: mapped by name
        np.testing.assert_allclose([pos[j] for j in names], ref.positions(t - LAG_S), atol=1e-12)
    assert bad == 10  # every 25th of 251


def test_arm_bag_wrist_bars_show_the_joint_positions(arm_bag: Path) -> None:
    ref = motion()
    lo, hi = np.asarray(ref.lower), np.asarray(ref.upper)
    heights = []
    for m in read_messages(arm_bag, ["/cameras/wrist/image_raw/compressed"]):
        img = np.asarray(Image.open(io.BytesIO(bytes(m.msg.data))).convert("RGB")).astype(int)
        h, w = img.shape[:2]
        coloured = (img.max(axis=2) - img.min(axis=2)) > 100  # the bars; the background is a dull blue
        centres = ((np.arange(6) + 0.5) * w / 6).astype(int)
        measured = coloured[:, centres].mean(axis=0)
        t = (m.msg.header.stamp.sec + m.msg.header.stamp.nanosec * 1e-9) - START_S
        expected = (ref.positions(t - LAG_S) - lo) / (hi - lo)
        np.testing.assert_allclose(measured, expected, atol=2.5 / h)
        heights.append(measured)
    assert np.ptp(np.asarray(heights), axis=0).min() > 3 / 48  # every joint's bar moves


def test_command_track_replaces_overlapping_commands_and_counts_bad_ones() -> None:
    names = ("a", "b")
    track = CommandTrack(names, max_gap_ns=200_000_000)
    pt = messages.joint_trajectory_point
    s = 1_000_000_000
    # Two points from t=1 s: (1.1 s: 0, 0), (1.3 s: 2, 20); joint order in the message differs.
    assert track.add(messages.joint_trajectory(s, ["b", "a"], [pt([0, 0], [], 0.1), pt([20, 2], [], 0.3)]), s)
    # A zero stamp starts on receipt (1.2 s); it replaces the first message from 1.25 s on.
    assert track.add(messages.joint_trajectory(0, ["a", "b"], [pt([1, 10], [], 0.05), pt([3, 30], [], 0.15)]), s + 200_000_000)
    assert not track.add(messages.joint_trajectory(s, ["a"], [pt([1], [], 0.1)]), s)  # joint b missing
    assert not track.add(messages.joint_trajectory(s, ["a", "b"], [pt([np.nan, 1], [], 0.1)]), s)
    assert not track.add(None, s)
    assert track.stats() == {"messages": 5, "points": 3, "dropped": {"deserialize_error": 1, "joint_missing": 1, "not_finite": 1}}
    got = track.at(np.array([1.1, 1.175, 1.25, 1.3, 1.35]) * 1e9)
    np.testing.assert_allclose(got, [[0, 0], [0.5, 5], [1, 10], [2, 20], [3, 30]])
    for when, key in ((1.0, "commands_missing"), (1.4, "commands_end")):
        with pytest.raises(FutureUnavailable) as err:
            track.at(np.array([when * 1e9, 1.3e9]) if when < 1.3 else np.array([1.3e9, when * 1e9]))
        assert err.value.key == key
    track.max_gap_ns = 100_000_000  # 1.1 s -> 1.25 s is then a gap
    with pytest.raises(FutureUnavailable) as err:
        track.at(np.array([1.2e9]))
    assert err.value.key == "command_gap"
    np.testing.assert_allclose(track.at(np.array([1.3e9])), [[2, 20]])  # within 1.25 .. 1.35 s


def test_eval_arm_summary_schema_shapes_and_counts(evaluation: tuple[Path, dict]) -> None:
    out, m = evaluation
    assert m["mode"] == "chunk"
    d = m["definitions"]
    assert d["joint_names"] == [f"joint{i}" for i in range(1, 7)] and d["steps"] == 50 and d["action_dt_s"] == DT
    o = m["overall"]
    assert o["ticks_evaluated"] > 5
    assert o["ticks_total"] == o["ticks_evaluated"] + o["ticks_skipped_total"] == sum(o["ticks_skipped"].values()) + o["ticks_evaluated"]
    (bag,) = m["bags"].values()
    assert bag["ticks_total"] == o["ticks_total"] == int(DURATION_S * 10) + 1
    # the chunk (0.98 s) runs past the recorded commands in the last second of the bag
    assert bag["ticks_skipped"].get("commands_end", 0) >= 9
    for method in ("model", "hold"):
        b = o[method]
        assert b["ticks"] == o["ticks_evaluated"]
        assert len(b["mae_by_joint"]) == len(b["rmse_by_joint"]) == 6
        assert len(b["mae_by_step"]) == len(b["rmse_by_step"]) == 50
        assert np.asarray(b["mae_by_step_joint"]).shape == (50, 6)
        assert b["mae"] == pytest.approx(np.mean(b["mae_by_joint"])) == pytest.approx(np.mean(b["mae_by_step"]))
        assert b["rmse"] >= b["mae"] > 0
    r = o["ratio_to_hold"]
    assert r["mae"] == pytest.approx(o["model"]["mae"] / o["hold"]["mae"])
    assert r["mae_by_joint"] == pytest.approx(np.divide(o["model"]["mae_by_joint"], o["hold"]["mae_by_joint"]).tolist())
    lat = o["latency_ms"]["total"]
    assert lat["count"] == o["ticks_evaluated"] and lat["p95"] >= lat["p50"] > 0
    with open(out / "ticks.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == o["ticks_evaluated"]
    for name in ("report.html", "report.md", "plots/model_vs_hold.png", "plots/error_vs_horizon.png", "plots/chunk_00_worst.png"):
        assert (out / name).is_file(), name


def test_eval_arm_hold_baseline_is_the_state_at_t0_against_the_recorded_commands(evaluation: tuple[Path, dict]) -> None:
    """The hold error per step, recomputed from the known motion at each evaluated tick's t0,
    matches the report; on a moving arm it grows with the horizon."""
    out, m = evaluation
    ref = motion()
    with open(out / "ticks.csv", newline="") as f:
        t0s = [float(row["t0_s"]) - START_S for row in csv.DictReader(f)]
    steps = np.arange(50) * DT
    errors = np.stack([np.abs(ref.positions(t - LAG_S)[None, :] - np.stack([ref.positions(t + s) for s in steps])) for t in t0s])
    hold = np.asarray(m["overall"]["hold"]["mae_by_step"])
    np.testing.assert_allclose(hold, errors.mean(axis=(0, 2)), atol=2e-3)  # interpolation of 100 Hz states / 50 Hz commands
    assert hold[-1] > 5 * hold[0]
    assert np.corrcoef(steps, hold)[0, 1] > 0.9


def test_eval_arm_counts_bad_joint_states_and_cut_instructions(evaluation: tuple[Path, dict]) -> None:
    out, m = evaluation
    (bag,) = m["bags"].values()
    assert bag["joint_states"]["drops"] == {"joint_missing": 5, "not_finite": 5}
    assert bag["joint_states"]["received"] == 251 and bag["joint_states"]["accepted"] == 241
    assert bag["instructions"]["messages"] == 2
    with open(out / "ticks.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    late = [r for r in rows if float(r["tick_time_s"]) >= START_S + CHANGE_S]
    assert late and len(late) < len(rows)
    assert all(r["instruction"] == LONG.strip() and int(r["truncated_tokens"]) > 0 for r in late)
    assert all(r["instruction"] == SHORT and int(r["truncated_tokens"]) == 0 for r in rows if r not in late)
    assert m["overall"]["warnings"]["instruction_truncated"] == len(late)


def test_eval_arm_missing_joint_skips_every_tick_without_crashing(arm_bag: Path, tmp_path: Path) -> None:
    text = CONFIG.read_text().replace("joint6]", "gripper]")
    assert "gripper]" in text
    config = tmp_path / "arm_gripper.yaml"
    config.write_text(text)
    rc = main(["eval", "--bag", str(arm_bag), "--config", str(config), "--model", str(MODEL), "--out", str(tmp_path / "o"), *FAST])
    assert rc == 1  # nothing evaluable, said so
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    (bag,) = m["bags"].values()
    assert bag["joint_states"]["drops"] == {"joint_missing": 251}
    assert m["overall"]["ticks_evaluated"] == 0 and m["overall"]["ticks_skipped_total"] == m["overall"]["ticks_total"] > 0
    assert set(k.split("/")[0] for k in m["overall"]["ticks_skipped"]) <= {"joint_state_missing", "no_frames"}
    assert bag["commands"]["dropped"] == {"joint_missing": 126}  # the recorded commands lack 'gripper' too


def test_eval_arm_refuses_a_driving_model_and_pattern_bag_arm_needs_a_config(arm_bag: Path, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "--bag", str(arm_bag), "--config", str(CONFIG), "--model", "random:tiny", "--out", str(tmp_path / "o")]) == 2
    assert "'random:tiny' is not a robot-arm policy" in capsys.readouterr().err
    assert main(["eval", "--arm", "--bag", str(arm_bag), "--out", str(tmp_path / "o")]) == 2  # the default config has no joints
    assert "arm.joint_names" in capsys.readouterr().err
    assert main(["pattern-bag", "--arm", "--out", str(tmp_path / "b")]) == 2
    assert "--arm needs a config with an arm section" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "b").exists()


def test_eval_arm_in_worker_processes_gives_the_single_process_results(arm_bag: Path, evaluation: tuple[Path, dict],
                                                                       tmp_path: Path) -> None:
    from vla_ros.replay.summary import strip_nondeterministic

    _, single = evaluation
    rc = main(["eval", "--bag", str(arm_bag), "--bag", str(arm_bag), "--config", str(CONFIG), "--model", str(MODEL),
               "--out", str(tmp_path), "--workers", "2", "--threads", "1", "--no-progress"])
    assert rc == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["run"]["workers"] == 2 and list(m["bags"]) == ["arm", "arm_2"]
    expected = strip_nondeterministic(single["bags"]["arm"])
    for name in ("arm", "arm_2"):
        assert strip_nondeterministic(m["bags"][name]) == expected
    assert m["overall"]["ticks_evaluated"] == 2 * single["overall"]["ticks_evaluated"]


def test_eval_arm_pi05_counts_cut_instructions(arm_bag: Path, tmp_path: Path) -> None:
    """pi0.5's prompt holds the binned state besides the task; its budget (200 tokens) is larger."""
    pi05 = ROOT / "test" / "fixtures" / "lerobot_pi05_tiny"
    rc = main(["eval", "--bag", str(arm_bag), "--config", str(CONFIG), "--model", str(pi05), "--out", str(tmp_path), *FAST])
    assert rc == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    with open(tmp_path / "ticks.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    late = [r for r in rows if r["instruction"] == LONG.strip()]
    assert late and all(int(r["truncated_tokens"]) > 0 for r in late)
    assert m["overall"]["warnings"]["instruction_truncated"] == len(late)
    assert m["overall"]["model"]["mae"] > 0 and len(m["overall"]["model"]["mae_by_step"]) == 50


def test_eval_arm_long_bag_cut_into_parts_gives_the_whole_bag_results(tmp_path: Path) -> None:
    """With more workers than bags a bag is cut into tick ranges (each warmed up on the second
    before it); merged, they give the one-process result (errors to float rounding, counts exactly)."""
    from vla_ros.replay.summary import strip_nondeterministic

    bag = tmp_path / "long"
    assert main(["pattern-bag", "--arm", "--config", str(CONFIG), "--out", str(bag), "--duration", "10.5", "--camera-hz", "10",
                 "--instruction", SHORT]) == 0
    results = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        assert main(["eval", "--bag", str(bag), "--config", str(CONFIG), "--model", str(MODEL), "--out", str(out),
                     "--workers", workers, "--threads", "1", "--no-progress"]) == 0
        results.append(json.loads((out / "metrics.json").read_text()))
    one, two = (strip_nondeterministic(r["bags"]["long"]) for r in results)
    assert results[1]["run"]["workers"] == 2 and one["ticks_total"] == 106
    for key in ("ticks_total", "ticks_evaluated", "ticks_skipped", "warnings", "joint_states", "commands", "input_drops"):
        assert two[key] == one[key], key
    for method in ("model", "hold"):
        for key, value in one[method].items():
            np.testing.assert_allclose(two[method][key], value, rtol=1e-6, atol=1e-9, err_msg=f"{method}.{key}")


def test_eval_arm_on_onnxruntime_gives_the_torch_chunks(arm_bag: Path, evaluation: tuple[Path, dict], tmp_path: Path) -> None:
    """`--backend onnxruntime` (the exported pi0 graphs) is evaluated like torch, same ticks, same errors."""
    pytest.importorskip("onnxruntime")
    _, torch_run = evaluation
    rc = main(["eval", "--bag", str(arm_bag), "--config", str(CONFIG), "--model", str(MODEL), "--out", str(tmp_path),
               "--backend", "onnxruntime", *FAST])
    assert rc == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["run"]["backend"] == "onnxruntime"
    assert m["overall"]["ticks_evaluated"] == torch_run["overall"]["ticks_evaluated"] > 0
    assert m["overall"]["model"]["mae"] == pytest.approx(torch_run["overall"]["model"]["mae"], abs=1e-4)
