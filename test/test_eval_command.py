"""`vla-ros eval` end to end: real bags on disk, the real random:tiny policy, the real CLI."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from bagtools import small_config

from vla_ros.cli import main
from vla_ros.replay.bag_io import BagWriter, bag_info, read_messages
from vla_ros.replay.pattern_bag import ArcMotion, PatternBagSpec, write_pattern_bag
from vla_ros.replay.summary import strip_nondeterministic
from vla_ros.ros import messages

MOTION = ArcMotion(speed=10.0, yaw_rate=0.1)
START_S = 1000.0
DT = 0.1
T = 64
# one worker unless parallelism is what a test checks (those pass --workers 2 after FAST)
FAST = ["--model", "random:tiny", "--steps", "2", "--threads", "1", "--workers", "1", "--no-progress"]


def write_config(path: Path, **extra: str) -> Path:
    lines = ["image: {height: 64, width: 96}", "inference: {max_reasoning_tokens: 4}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def with_calibration(src: Path, dst: Path) -> None:
    """Copy a pattern bag and add CameraInfo for front_wide plus /tf_static (base_link <- optical)."""
    body_from_optical = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # 90 deg: (x,y,z,w) below
    q = (-0.5, 0.5, -0.5, 0.5)
    from vla_ros.sensors.geometry import quat_to_matrix

    np.testing.assert_allclose(quat_to_matrix(np.array(q)), body_from_optical, atol=1e-12)
    start = round(START_S * 1e9)
    with BagWriter(dst) as w:
        w.write("/tf_static", messages.tf_message([
            messages.transform_stamped(start, "base_link", "front_wide_optical", (1.7, 0.0, 1.45), q)]), start)
        w.write("/cameras/front_wide/camera_info", messages.camera_info(start, "front_wide_optical", 96, 64, 40.0, 40.0, 47.5, 31.5), start)
        for m in read_messages(src):
            w.write(m.topic, m.msg, m.log_time_ns)


@pytest.fixture(scope="module")
def arc_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("arc")
    plain = d / "plain"
    write_pattern_bag(plain, small_config(), PatternBagSpec(duration_s=9.0, height=64, width=96, start_s=START_S, motion=MOTION))
    bag = d / "arc_calibrated"
    with_calibration(plain, bag)
    return bag


@pytest.fixture(scope="module")
def main_run(arc_bag: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    d = tmp_path_factory.mktemp("run")
    cfg = write_config(d / "cfg.yaml")
    out = d / "out"
    argv = ["eval", "--bag", str(arc_bag), "--config", str(cfg), "--out", str(out), "--limit", "3", "--samples", "2",
            "--noise-scale", "1", "--reasoning", "--seed", "7", *FAST]
    assert main(argv) == 0
    return out, argv


def arc_pose(t_ns: int) -> np.ndarray:
    return MOTION.pose((t_ns - round(START_S * 1e9)) / 1e9)[0]


def path_xyz(msg) -> np.ndarray:
    return np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z] for p in msg.poses])


def test_metrics_schema_and_hand_computed_baselines(main_run) -> None:
    out, _ = main_run
    m = json.loads((out / "metrics.json").read_text())
    overall, bag = m["overall"], m["bags"]["arc_calibrated"]
    for block in (overall, bag):
        assert block["ticks_evaluated"] == 3
        assert block["ticks_total"] == block["ticks_evaluated"] + block["ticks_skipped_total"]
        assert block["ticks_skipped"]["ego_history_short"] == 15
        for method in ("model", "constant_velocity", "constant_velocity_yaw_rate"):
            b = block[method]
            for key in ("ade", "fde", "ade_1s", "fde_1s", "ade_2s", "fde_2s", "ade_3s", "fde_3s", "ade_5s", "fde_5s",
                        "lateral_ade", "lateral_fde", "longitudinal_ade", "longitudinal_fde", "miss_rate"):
                assert isinstance(b[key], float), (method, key)
        assert block["model"]["samples"] == 2 and block["model"]["min_ade"] <= block["model"]["ade"]
        for stage in ("stack", "vision", "prefill", "reasoning", "denoise", "decode", "policy", "total"):
            assert set(block["latency_ms"][stage]) >= {"p50", "p95", "p99", "max"}
    # The ego drives an exact arc: CV + yaw rate is (nearly) perfect, CV has the closed-form error.
    assert overall["constant_velocity_yaw_rate"]["ade"] < 0.02
    t = (np.arange(T) + 1) * DT
    r, w = MOTION.speed / MOTION.yaw_rate, MOTION.yaw_rate
    cv = np.hypot(r * np.sin(w * t) - MOTION.speed * t, r * (1 - np.cos(w * t)))
    assert overall["constant_velocity"]["ade"] == pytest.approx(cv.mean(), abs=0.02)
    assert overall["constant_velocity"]["fde"] == pytest.approx(cv[-1], abs=0.05)
    assert overall["constant_velocity"]["fde_3s"] == pytest.approx(cv[29], abs=0.02)
    assert overall["constant_velocity"]["miss_rate"] == 1.0
    run = m["run"]
    assert run["model"] == "random:tiny" and run["seed"] == 7 and run["samples"] == 2 and run["reasoning"] is True
    assert run["command"].startswith("vla-ros eval --bag ") and run["code_version"] and run["device"].startswith("cpu")
    assert bag["camera_projection"] is True and bag["missing_topics"] == []


def test_prediction_bag_contents(main_run) -> None:
    out, _ = main_run
    m = json.loads((out / "metrics.json").read_text())
    bag = out / "predictions.mcap"
    assert bag.is_file()
    info = bag_info(bag)
    assert info.message_counts["/ego/odom"] == 451
    for topic in ("/vla/trajectory", "/vla/ground_truth_path", "/vla/reasoning", "/vla/baseline/constant_velocity_yaw_rate"):
        assert info.message_counts[topic] == 3, topic
    assert info.topic_types["/vla/trajectory"] == "nav_msgs/msg/Path"
    assert info.topic_types["/vla/reasoning"] == "std_msgs/msg/String"
    # odom -> base_link on /tf with every odometry message, equal to the odometry pose
    assert info.message_counts["/tf"] == 451
    odom = [x.msg for x in read_messages(bag, ["/ego/odom"])][100]
    (tf,) = [x.msg for x in read_messages(bag, ["/tf"])][100].transforms
    assert (tf.header.frame_id, tf.child_frame_id) == ("odom", "base_link") and tf.header.stamp == odom.header.stamp
    assert tf.transform.translation.x == odom.pose.pose.position.x and tf.transform.rotation.z == odom.pose.pose.orientation.z
    # the file's embedded rosbag2 metadata names the file itself, not a temporary one
    raw = bag.read_bytes()
    assert b"relative_file_paths:\n- predictions.mcap" in raw and b".writing" not in raw and b"tmpdir" not in raw
    by_topic: dict[str, list] = {}
    for msg in read_messages(bag, ["/vla/trajectory", "/vla/ground_truth_path"]):
        by_topic.setdefault(msg.topic, []).append(msg.msg)
    ades = []
    for traj, gt in zip(by_topic["/vla/trajectory"], by_topic["/vla/ground_truth_path"]):
        t0 = traj.header.stamp.sec * 10**9 + traj.header.stamp.nanosec
        assert traj.header.frame_id == "odom" and gt.header.frame_id == "odom"
        assert (gt.header.stamp.sec, gt.header.stamp.nanosec) == (traj.header.stamp.sec, traj.header.stamp.nanosec)
        assert len(traj.poses) == T + 1  # the t0 pose, then 64 waypoints
        last = traj.poses[-1].header.stamp
        assert last.sec * 10**9 + last.nanosec == t0 + T * round(DT * 1e9)
        # The recorded future in odom is the analytic arc.
        expected = np.array([arc_pose(t0 + k * round(DT * 1e9)) for k in range(T + 1)])
        np.testing.assert_allclose(path_xyz(gt)[:, :2], expected[:, :2], atol=5e-3)
        p, g = path_xyz(traj)[1:, :2], path_xyz(gt)[1:, :2]
        ades.append(np.linalg.norm(p - g, axis=1).mean())
    # The model's ADE recomputed from the output bag equals metrics.json's.
    assert np.mean(ades) == pytest.approx(m["overall"]["model"]["ade"], abs=1e-9)


def test_report_is_self_contained(main_run) -> None:
    out, _ = main_run
    page = (out / "report.html").read_text()
    assert "src='plots" not in page and 'src="plots' not in page
    assert page.count("data:image/png;base64,") >= 6  # horizon, 2 latency plots, 3 gallery ticks
    for text in ("random:tiny", "code version", "device", "vla-ros eval --bag", "reasoning:", "constant velocity + yaw rate"):
        assert text in page
    md = (out / "report.md").read_text()
    links = re.findall(r"\]\((plots/[^)]+\.png)\)", md)
    assert "plots/error_vs_horizon.png" in links and any("tick_" in x for x in links)
    for link in links:
        assert (out / link).is_file()
    rows = (out / "ticks.csv").read_text().strip().splitlines()
    assert len(rows) == 4 and rows[0].startswith("bag,tick,")


def test_same_inputs_and_seed_give_identical_metrics(main_run, tmp_path: Path) -> None:
    out, argv = main_run
    again = list(argv)
    again[again.index("--out") + 1] = str(tmp_path / "again")
    assert main(again) == 0
    a = json.loads((out / "metrics.json").read_text())
    b = json.loads((tmp_path / "again" / "metrics.json").read_text())
    for doc in (a, b):
        doc["run"].pop("command")  # differs only by --out
        doc["run"].pop("code_version")  # others may commit to this checkout between the runs
    assert strip_nondeterministic(a) == strip_nondeterministic(b)


def test_noise_scale_zero_is_deterministic_and_the_default(main_run, tmp_path: Path) -> None:
    out, argv = main_run

    def model_ades(run_dir: Path) -> list[str]:
        return [line.split(",")[4] for line in (run_dir / "ticks.csv").read_text().splitlines()[1:]]

    def run(name: str, *extra: str, sampled: bool = False) -> Path:
        again = list(argv)
        again[again.index("--out") + 1] = str(tmp_path / name)
        if not sampled:  # one sample, the config's noise scale
            again[again.index("--samples") + 1] = "1"
            del again[again.index("--noise-scale"):again.index("--noise-scale") + 2]
        assert main([*again, *extra]) == 0
        return tmp_path / name

    default = model_ades(run("default"))
    zero_a = model_ades(run("zero_a", "--noise-scale", "0", "--seed", "1"))
    zero_b = model_ades(run("zero_b", "--noise-scale", "0", "--seed", "2"))
    assert default == zero_a == zero_b  # deterministic by default: the seed does not matter
    sampled = model_ades(run("scale1", "--seed", "1", sampled=True))
    assert sampled != zero_a and sampled != model_ades(out)  # noise scale 1 samples, seeded
    assert json.loads((tmp_path / "default" / "metrics.json").read_text())["run"]["noise_scale"] == 0.0
    assert json.loads((out / "metrics.json").read_text())["run"]["noise_scale"] == 1.0


def test_several_samples_without_noise_are_refused_before_any_work(main_run, tmp_path: Path, capsys) -> None:
    _, argv = main_run
    again = list(argv)
    again[again.index("--out") + 1] = str(tmp_path / "refused")
    del again[again.index("--noise-scale"):again.index("--noise-scale") + 2]
    assert main(again) == 2
    assert "identical trajectories" in capsys.readouterr().err and not (tmp_path / "refused").exists()


def test_bad_input_is_counted_not_fatal(arc_bag: Path, tmp_path: Path) -> None:
    """Dropped frames, a corrupt JPEG and a loop (time jump back) in one bag."""
    cfg = small_config()
    src = tmp_path / "src"
    write_pattern_bag(src, cfg, PatternBagSpec(duration_s=8.5, height=64, width=96, start_s=START_S, motion=MOTION),
                      keep=lambda v, k: not (v == 1 and k in (17, 18)))
    bad = tmp_path / "bad"
    loop_ns = round(8.6e9)
    with BagWriter(bad) as w:
        for shift in (0, loop_ns):  # the same recording twice: stamps restart, receive time goes on
            for m in read_messages(src):
                msg = m.msg
                if m.topic.endswith("front_tele/image_raw/compressed") and msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == round((START_S + 2.0 + 3 * 0.002) * 1e9):
                    msg = messages.compressed_image(round((START_S + 2.0 + 3 * 0.002) * 1e9), "x", b"not a jpeg")
                w.write(m.topic, msg, m.log_time_ns + shift)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "c.yaml")
    assert main(["eval", "--bag", str(bad), "--config", str(cfg), "--out", str(out), *FAST]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    m = doc["bags"]["bad"]
    assert m["time_jumps"] >= 1 and m["odometry"]["segments"] == 2
    assert m["input_drops"].get("corrupt", 0) >= 2  # once per loop
    reasons = m["ticks_skipped"]
    assert any(k.startswith("missing_frame/front_wide") for k in reasons)
    assert any(k.startswith("missing_frame/front_tele") for k in reasons)
    assert reasons["future_short"] > 0
    assert m["ticks_total"] == m["ticks_evaluated"] + m["ticks_skipped_total"]
    # Both loops contribute evaluated ticks.
    times = [float(row.split(",")[2]) for row in (out / "ticks.csv").read_text().splitlines()[1:]]
    assert min(times) < START_S + 8.6 < max(times)
    # Two workers cut the 172 ticks into two parts, the second starting at the loop (the time
    # jump falls in its warm-up): the same ticks, counts and errors as one sequential replay.
    split = tmp_path / "split"
    assert main(["eval", "--bag", str(bad), "--config", str(cfg), "--out", str(split), *FAST, "--workers", "2"]) == 0
    doc2 = json.loads((split / "metrics.json").read_text())
    assert doc2["run"]["workers"] == 2
    for d in (doc, doc2):
        d.pop("run")
    assert strip_nondeterministic(doc2) == strip_nondeterministic(doc)
    rows = [[line.split(",")[:10] for line in (d / "ticks.csv").read_text().splitlines()] for d in (out, split)]
    assert rows[0] == rows[1]  # every tick's errors, to the last digit


def test_nothing_evaluable_exits_1_with_reason(tmp_path: Path, capsys) -> None:
    short = tmp_path / "short"  # 5 s: no tick has 6.4 s of recorded future
    write_pattern_bag(short, small_config(), PatternBagSpec(duration_s=5.0, height=64, width=96, motion=MOTION))
    cfg = write_config(tmp_path / "c.yaml")
    assert main(["eval", "--bag", str(short), "--config", str(cfg), "--out", str(tmp_path / "o1"), *FAST]) == 1
    err = capsys.readouterr().err
    assert "nothing could be evaluated" in err and "future_short" in err
    m = json.loads((tmp_path / "o1" / "metrics.json").read_text())
    assert m["overall"]["ticks_evaluated"] == 0 and m["overall"]["model"]["ade"] is None
    assert (tmp_path / "o1" / "report.html").is_file()
    # A bag without the configured odometry topic.
    other = write_config(tmp_path / "other.yaml", ego="{odometry_topic: /other/odom}")
    assert main(["eval", "--bag", str(short), "--config", str(other), "--out", str(tmp_path / "o2"), *FAST]) == 1
    err = capsys.readouterr().err
    assert "topics not in the bag: /other/odom" in err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "/no/such/model"], "model '/no/such/model' not found"),
        (["--model", "random:nope"], "unknown model preset 'random:nope'"),
        (["--model", "random:tiny", "--config", "BAD"], "frames.count"),
        (["--model", "random:tiny", "--config", "THREE"], "takes 4 cameras, the config lists 3"),
        (["--model", "random:tiny", "--bag", "/no/such/bag"], "bag '/no/such/bag' does not exist"),
        (["--model", "random:tiny", "--samples", "0"], "--samples must be >= 1"),
        (["--model", "random:tiny", "--front-camera", "rear"], "'rear' is not a configured camera"),
    ],
)
def test_errors_stop_before_any_work(arc_bag: Path, tmp_path: Path, capsys, args: list[str], message: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("frames: {count: 0}\n")
    three = tmp_path / "three.yaml"
    three.write_text("cameras:\n" + "".join(f"  - {{name: c{i}, topic: /c{i}/image_raw/compressed}}\n" for i in range(3)))
    args = [{"BAD": str(bad), "THREE": str(three)}.get(a, a) for a in args]
    out = tmp_path / "out"
    argv = ["eval", "--bag", str(arc_bag), "--out", str(out), "--no-progress", *args]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_two_workers_two_bags(arc_bag: Path, tmp_path: Path) -> None:
    second = tmp_path / "straight"
    write_pattern_bag(second, small_config(), PatternBagSpec(duration_s=8.5, height=64, width=96, motion=ArcMotion(8.0, 0.0)))
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "c.yaml")
    argv = ["eval", "--bag", str(arc_bag), "--bag", str(second), "--config", str(cfg), "--out", str(out),
            "--limit", "1", "--ablate", "cameras", *FAST, "--workers", "2"]
    assert main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["bags"]) == ["arc_calibrated", "straight"]
    assert m["overall"]["ticks_evaluated"] == 2
    assert m["run"]["workers"] == 2 and m["run"]["ablate"] == ["cameras"] and m["run"]["model_parameters"] > 0
    # Straight line: both baselines are exact.
    assert m["bags"]["straight"]["constant_velocity"]["ade"] < 0.02
    for name in ("arc_calibrated", "straight"):
        assert (out / "predictions" / f"{name}.mcap").is_file()
        assert m["bags"][name]["predictions_bag"] == f"predictions/{name}.mcap"


def test_simulated_drive(tmp_path: Path) -> None:
    """A realistic bag from the driving world (CameraInfo, /tf_static, /sim/ground_truth): the
    ground-truth path in the output bag matches the simulator's own ego poses."""
    drive = tmp_path / "drive"
    assert main(["sim", "record", "--out", str(drive), "--seed", "3", "--duration", "8", "--width", "96", "--height", "64"]) == 0
    out = tmp_path / "out"
    assert main(["eval", "--bag", str(drive), "--config", str(write_config(tmp_path / "c.yaml")), "--out", str(out),
                 "--limit", "1", *FAST]) == 0
    m = json.loads((out / "metrics.json").read_text())["bags"]["drive"]
    assert m["ticks_evaluated"] == 1 and m["camera_projection"] is True
    sim = {}
    for msg in read_messages(drive, ["/sim/ground_truth"]):
        label = json.loads(msg.msg.data)
        sim[label["stamp_ns"]] = (label["ego"]["x"], label["ego"]["y"])
    (gt,) = [x.msg for x in read_messages(out / "predictions.mcap", ["/vla/ground_truth_path"])]
    matched = 0
    for pose in gt.poses:
        stamp = pose.header.stamp.sec * 10**9 + pose.header.stamp.nanosec
        if stamp in sim:
            assert (pose.pose.position.x, pose.pose.position.y) == pytest.approx(sim[stamp], abs=0.02)
            matched += 1
    assert matched >= 60


def test_camera_ablation_changes_only_the_model(arc_bag: Path) -> None:
    from vla_ros.replay.evaluator import EvalOptions, evaluate_bag
    from vla_ros.runtime.policy import Policy

    import torch

    policy = Policy.from_pretrained("random:tiny")
    cfg = small_config()
    base = EvalOptions(rate_hz=10.0, steps=2, samples=1, seed=0, reasoning=False, max_reasoning_tokens=4, limit=1, progress=False)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # as --threads 1 does: robust on a busy machine
    try:
        plain = evaluate_bag(arc_bag, cfg, policy, base)
        grey = evaluate_bag(arc_bag, cfg, policy, EvalOptions(**{**base.__dict__, "ablate": ("cameras",)}))
    finally:
        torch.set_num_threads(previous)
    a, b = plain.records[0], grey.records[0]
    assert a.t0_ns == b.t0_ns
    assert not np.allclose(a.pred_xyz, b.pred_xyz)  # the policy sees the images
    for name in a.baselines:
        np.testing.assert_array_equal(a.baselines[name], b.baselines[name])
    np.testing.assert_array_equal(a.future.xyz, b.future.xyz)
    # The gallery shows the recorded image, not the grey one the policy saw, as recorded: the
    # bag's own JPEG bytes at its full size, not the model's input size.
    assert a.front_jpeg == b.front_jpeg
    recorded = {m.msg.header.stamp.sec * 10**9 + m.msg.header.stamp.nanosec: bytes(m.msg.data)
                for m in read_messages(arc_bag, ["/cameras/front_wide/image_raw/compressed"])}
    assert a.front_jpeg == recorded[a.front_stamp_ns]
    from PIL import Image
    import io

    assert Image.open(io.BytesIO(a.front_jpeg)).size == (96, 64) and policy.image_size_hw != (64, 96)


def test_split_gives_every_part_the_same_evaluable_ticks(tmp_path: Path):
    from vla_ros.config import load_config
    from vla_ros.model.presets import preset_config
    from vla_ros.replay.eval_runner import BagJob, split_jobs, unevaluable_ticks
    from vla_ros.replay.tick_replay import count_ticks

    cfg = write_config(tmp_path / "cfg.yaml")
    config = load_config(cfg)
    bag = tmp_path / "bag"
    write_pattern_bag(bag, config, PatternBagSpec(duration_s=20.0, height=64, width=96, start_s=START_S, motion=MOTION))
    head, tail = unevaluable_ticks(config, preset_config("random:tiny"), 10.0)
    assert (head, tail) == (15, 64)  # 15 history steps of 0.1 s; 64 waypoints of 0.1 s
    total = count_ticks(bag, 10.0)
    job = BagJob(0, str(bag), "bag", None)
    parts = split_jobs([job], 2, 10.0, min_ticks=50, head_ticks=head, tail_ticks=tail)
    assert [(p.part, p.parts) for p in parts] == [(0, 2), (1, 2)]
    assert parts[0].first == 0 and parts[0].stop == parts[1].first and parts[1].stop is None  # contiguous, whole bag
    evaluable = [min(p.stop or total, total - tail) - max(p.first, head) for p in parts]
    assert abs(evaluable[0] - evaluable[1]) <= 1, evaluable
    even = split_jobs([job], 2, 10.0, min_ticks=50)  # without head/tail: even ranges
    assert even[1].first == round(total / 2) != parts[1].first
    # 201 ticks hold 122 evaluable ones, too few for two parts of >= 70 evaluable ticks: even ranges.
    short = split_jobs([job], 2, 10.0, min_ticks=70, head_ticks=head, tail_ticks=tail)
    assert [p.first for p in short] == [0, round(total / 2)]
    assert split_jobs([job], 2, 10.0, min_ticks=101, head_ticks=head, tail_ticks=tail) == [job]  # total // 101 == 1
