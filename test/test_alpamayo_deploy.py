"""The reference-saved Alpamayo fixture directories through vla_ros's commands (issue 18, done
when): `vla-ros eval --model DIR` on a bag and `vla-ros node --transport dds --model DIR` fed by
`vla-ros play --clock` must give the trajectory NVIDIA's reference code gave for the same inputs.
Both releases: Alpamayo-R1 (4 cameras) and Alpamayo 1.5 (3 cameras, named in the prompt by their
ids 0, 1, 6, and a navigation instruction, which the bag carries on the navigation topic).

The bag carries the fixture's inputs exactly: cameras x 4 frames of 64x96 (the fixture's images,
PNG so no pixel changes) stamped at t0 - 0.3 .. t0, and odometry whose 16 poses at
t0 - 1.5 .. t0 are the fixture's ego history (t0 at the odom origin with zero yaw, so the t0 frame
is the odom frame), continued along the same arc for 7 s so eval has a recorded future. Both
commands run with their defaults (zero start noise, one sample) plus greedy reasoning, which is
the reference run recorded in `reference_zero_noise.safetensors`.
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from vla_ros.config import load_config
from vla_ros.model.alpamayo_release import BASE_VLM_ENV
from vla_ros.replay.bag_io import BagWriter, read_messages
from vla_ros.ros import messages
from vla_ros.sensors.geometry import yaw_to_quat

FIXTURES = Path(__file__).parent / "fixtures"
TOL = 1e-4
T0_NS = 1_000_000_000_000  # bag time of t0: 1000 s
# The fixture's history is this arc (scripts/reference_fixtures/alpamayo.py ego_history); the bag
# continues it past t0 and before the history.
SPEED0, ACCEL, YAW_RATE = 7.0, 0.4, 0.08
CONFIG = """\
image: {height: 64, width: 96, override_model: true}  # the fixture's 64x96 frames as they are
inference: {reasoning: true, max_reasoning_tokens: 48}
safety: {max_input_age_s: 30.0, max_output_age_s: 30.0, max_abs_curvature: 10.0, max_abs_acceleration: 100.0}
"""
# Alpamayo 1.5's fixture: cameras 0, 1, 6 (cross left, front wide, front tele), the route on a topic
CONFIG_A15 = CONFIG + """\
cameras:
  - {name: cross_left, topic: cameras/cross_left/image_raw/compressed, camera_id: 0}
  - {name: front_wide, topic: cameras/front_wide/image_raw/compressed, camera_id: 1}
  - {name: front_tele, topic: cameras/front_tele/image_raw/compressed, camera_id: 6}
navigation: {topic: vla/navigation, max_age_s: 0.0}
"""
RELEASES = {"alpamayo_r1": ("alpamayo_r1_tiny", CONFIG), "alpamayo1_5": ("alpamayo1_5_tiny", CONFIG_A15)}


def _arc(t: float) -> tuple[list[float], float]:
    s = SPEED0 * t + 0.5 * ACCEL * t * t
    radius = SPEED0 / YAW_RATE
    return [radius * math.sin(s / radius), radius * (1 - math.cos(s / radius)), 0.004 * math.sin(3.0 * t)], YAW_RATE * t


def write_fixture_bag(path: Path, config, fixture: Path, route: str | None = None, later_frames: int = 0) -> None:
    """`route`: the navigation text the bag carries (None: the fixture's; "": none).
    `later_frames`: each camera goes on for that many frames after t0 (its t0 image again), so
    ticks after the fixture's have new stacks."""
    inputs = load_file(str(fixture / "inputs.safetensors"))
    cams = len(config.cameras)
    images = inputs["images"].permute(0, 2, 3, 1).numpy().reshape(cams, 4, 64, 96, 3)  # camera-major
    hist_xyz = inputs["ego_history_xyz"][0, 0].double().numpy()
    hist_rot = inputs["ego_history_rot"][0, 0].double().numpy()
    config = config.resolve_topics()
    events = []
    for k in range(-30, 71):  # odometry at 10 Hz from t0 - 3 s to t0 + 7 s
        stamp = T0_NS + k * 100_000_000
        if -15 <= k <= 0:  # the fixture's history poses, exactly
            xyz, yaw = hist_xyz[k + 15].tolist(), math.atan2(hist_rot[k + 15, 1, 0], hist_rot[k + 15, 0, 0])
        else:
            xyz, yaw = _arc(k / 10)
        speed = SPEED0 + ACCEL * k / 10
        events.append((stamp, 0, config.ego.odometry_topic,
                       messages.odometry(stamp, xyz, yaw_to_quat(yaw), (speed, 0.0, 0.0), (0.0, 0.0, YAW_RATE * speed))))
    for c, cam in enumerate(config.cameras):
        for f in range(4 + later_frames):
            stamp = T0_NS - (3 - f) * 100_000_000
            msg = messages.compressed_image(stamp, f"{cam.name}_optical", messages.encode_png(images[c, min(f, 3)]), "png")
            events.append((stamp, 1 + c, cam.topic, msg))
    nav = route
    if config.navigation.topic and route is None:  # the fixture's own (R1's fixture has none)
        nav = json.loads((fixture / "meta.json").read_text())["nav_text"]
    if config.navigation.topic and nav:  # the route, once before the first frame (the node keeps the latest)
        events.append((T0_NS - 2_000_000_000, -1, config.navigation.topic, messages.string(nav)))
    events.sort(key=lambda e: (e[0], e[1]))
    with BagWriter(path, "mcap") as bag:
        for stamp, _, topic, msg in events:
            bag.write(topic, msg, stamp)


def _expected(fixture: Path) -> tuple[np.ndarray, np.ndarray]:
    """The reference's trajectory from zero start noise: xyz (64, 3) and yaw (64,)."""
    ref = load_file(str(fixture / "reference_zero_noise.safetensors"))
    xyz = ref["pred_xyz"][0, 0, 0].double().numpy()
    rot = ref["pred_rot"][0, 0, 0].double().numpy()
    return xyz, np.arctan2(rot[:, 1, 0], rot[:, 0, 0])


def _path_arrays(msg) -> tuple[np.ndarray, np.ndarray]:
    xyz = np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z] for p in msg.poses])
    q = np.array([[p.pose.orientation.z, p.pose.orientation.w] for p in msg.poses])
    return xyz, 2 * np.arctan2(q[:, 0], q[:, 1])


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _assert_reference_path(msg, fixture: Path) -> None:
    xyz, yaw = _path_arrays(msg)
    want_xyz, want_yaw = _expected(fixture)
    assert _stamp(msg) == T0_NS and len(xyz) == 65  # t0 itself, then the 64 waypoints
    np.testing.assert_allclose(xyz[1:], want_xyz, atol=TOL, rtol=0)
    np.testing.assert_allclose(yaw[1:], want_yaw, atol=TOL, rtol=0)


def _assert_retimed_reference_path(msg, fixture: Path) -> None:
    _assert_retimed_path(msg, *_expected(fixture))


def _assert_retimed_path(msg, want_xyz: np.ndarray, want_yaw: np.ndarray) -> None:
    """The node publishes the plan from the control tick's time on (control.trajectory.retime: the
    plan, t0 pose first, linearly interpolated at now, now + dt, ...): the same done to the
    expected trajectory (64 waypoints after the fixture's t0, the odom origin with zero yaw)
    must give the same poses."""
    _assert_retimed(msg, T0_NS, np.vstack([np.zeros(3), want_xyz]), np.concatenate([[0.0], want_yaw]))


def _assert_retimed(msg, t0_ns: int, full_xyz: np.ndarray, full_yaw: np.ndarray) -> None:
    """`msg` is the plan stamped t0_ns (65 odom poses: t0's, then the 64 waypoints) retimed."""
    xyz, yaw = _path_arrays(msg)
    rel = (np.array([_stamp(p) for p in msg.poses]) - t0_ns) / 1e9
    grid = np.arange(65) * 0.1
    assert _stamp(msg) == t0_ns and len(xyz) >= 2 and rel[0] >= 0
    np.testing.assert_allclose(xyz, np.stack([np.interp(rel, grid, full_xyz[:, k]) for k in range(3)], 1), atol=TOL, rtol=0)
    np.testing.assert_allclose(yaw, np.interp(rel, grid, full_yaw), atol=TOL, rtol=0)


def _release_setup(release: str, tmp_path: Path, monkeypatch, edit: tuple[str, str] = ("", "")) -> tuple[Path, Path, Path]:
    """(config file, bag, fixture directory) of one release; `edit` replaces a piece of its config."""
    name, config = RELEASES[release]
    fixture = FIXTURES / name
    monkeypatch.setenv(BASE_VLM_ENV, str(fixture / "base_vlm"))
    cfg_path = tmp_path / "alpamayo_fixture.yaml"
    cfg_path.write_text(config.replace(*edit) if edit[0] else config)
    bag = tmp_path / "bag"
    write_fixture_bag(bag, load_config(cfg_path), fixture)
    return cfg_path, bag, fixture


@pytest.fixture(params=sorted(RELEASES))
def setup(request, tmp_path, monkeypatch):
    return _release_setup(request.param, tmp_path, monkeypatch)


def _run_eval(cfg_path: Path, bag: Path, fixture: Path, out: Path, model: Path | None = None,
              at_t0_only: bool = True) -> tuple[list, dict]:
    """`vla-ros eval` on the fixture bag: (its predicted paths, metrics.json). `model`: another
    model directory; `at_t0_only`: check that every evaluated tick is the fixture's stack."""
    done = subprocess.run([sys.executable, "-m", "vla_ros.cli", "eval", "--bag", str(bag), "--model", str(model or fixture / "model"),
                           "--config", str(cfg_path), "--out", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=600, env={**os.environ})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["ticks_evaluated"] >= 1, metrics["overall"]
    paths = [m.msg for m in read_messages(out / "predictions.mcap", ["/vla/trajectory"])]
    assert paths and (not at_t0_only or all(_stamp(p) == T0_NS for p in paths))
    return paths, metrics


def test_eval_with_the_release_directory_gives_the_reference_trajectory(setup, tmp_path) -> None:
    cfg_path, bag, fixture = setup
    out = tmp_path / "eval"
    paths, metrics = _run_eval(cfg_path, bag, fixture, out)
    for p in paths:
        _assert_reference_path(p, fixture)
    if "navigation" in cfg_path.read_text():  # the route in force at every tick, as the node would have it
        nav = json.loads((fixture / "meta.json").read_text())["nav_text"]
        (bag_metrics,) = metrics["bags"].values()
        assert bag_metrics["navigation"]["messages"] == 1 and "/vla/navigation" not in bag_metrics["missing_topics"]
        with open(out / "ticks.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows and all(r["navigation"] == nav for r in rows)


def _domain() -> int:
    return 20 + (os.getpid() + int(time.time())) % 80  # ids <= 101 keep Cyclone's ports out of the ephemeral range


def _run_node(cfg_path: Path, bag: Path, fixture: Path, tmp_path: Path, model: Path | None = None,
              every_path: bool = False) -> list:
    """`vla-ros node --transport dds` fed by `vla-ros play --clock` of the fixture bag: the paths it
    published for the fixture's t0 (its log: tmp_path / node.log). `model`: another model
    directory; `every_path`: return every path it published, stopping fallbacks included."""
    pytest.importorskip("cyclonedds", reason="cyclonedds is not installed: the DDS end-to-end test needs it")
    from vla_ros.ros.dds_transport import DdsTransport

    domain = _domain()
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "node.log"
    with open(log_path, "w") as log:
        node = subprocess.Popen([sys.executable, "-m", "vla_ros.cli", "node", "--transport", "dds", "--model", str(model or fixture / "model"),
                                 "--config", str(cfg_path), "--use-sim-time"], env=env, stdout=log, stderr=subprocess.STDOUT)
    paths = []
    try:
        with DdsTransport(domain_id=domain) as dds:
            dds.subscribe("/vla/trajectory", "nav_msgs/msg/Path", paths.append)
            end = time.monotonic() + 180
            while "drive node running" not in log_path.read_text():
                assert node.poll() is None and time.monotonic() < end, "node did not start:\n" + log_path.read_text()[-3000:]
                time.sleep(0.2)
            play = subprocess.run([sys.executable, "-m", "vla_ros.cli", "play", "--bag", str(bag), "--transport", "dds",
                                   "--clock", "--wait-subscribers", "20", "--start-delay", "0.5"],
                                  env=env, capture_output=True, text=True, timeout=120)
            assert play.returncode == 0, play.stderr[-2000:]
            end = time.monotonic() + 60
            while not any(_stamp(p) == T0_NS for p in list(paths)) and time.monotonic() < end:
                time.sleep(0.1)
    finally:
        node.terminate()
        assert node.wait(30) == 0, log_path.read_text()[-3000:]
    if every_path:
        return list(paths)
    policy = [p for p in list(paths) if _stamp(p) == T0_NS]  # the others are the stopping fallback
    assert policy, f"no trajectory for the fixture's t0 among {len(paths)}; node log:\n" + log_path.read_text()[-3000:]
    return policy


def test_node_over_dds_with_the_release_directory_publishes_the_reference_trajectory(setup, tmp_path) -> None:
    cfg_path, bag, fixture = setup
    for p in _run_node(cfg_path, bag, fixture, tmp_path):
        _assert_retimed_reference_path(p, fixture)


def test_sampled_noise_is_seeded_by_tick_the_same_in_node_and_eval(tmp_path, monkeypatch) -> None:
    """With inference.noise_scale 1 the start noise is drawn, seeded by (inference.seed, t0): the
    node gives the trajectory eval gives for the same tick (and not the zero-noise one)."""
    cfg_path, bag, fixture = _release_setup("alpamayo_r1", tmp_path, monkeypatch,
                                            ("max_reasoning_tokens: 48}", "max_reasoning_tokens: 48, noise_scale: 1.0, seed: 7}"))
    evaluated, _ = _run_eval(cfg_path, bag, fixture, tmp_path / "eval")
    want_xyz, want_yaw = _path_arrays(evaluated[0])
    assert np.abs(want_xyz[1:] - _expected(fixture)[0]).max() > 10 * TOL  # the noise is not zero
    for p in _run_node(cfg_path, bag, fixture, tmp_path):
        _assert_retimed_path(p, want_xyz[1:], want_yaw[1:])


def test_eval_navigation_guidance_weight_reaches_the_policy(tmp_path, monkeypatch) -> None:
    """`navigation.guidance_weight` turns on Alpamayo 1.5's classifier-free guidance (off in the
    fixture's config.json, as in the reference's plain entry point): the trajectory moves away
    from the unguided reference, by more than ten times the tolerance the unguided run meets."""
    cfg_path, bag, fixture = _release_setup("alpamayo1_5", tmp_path, monkeypatch,
                                            ("max_age_s: 0.0}", "max_age_s: 0.0, guidance_weight: 3.0}"))
    paths, _ = _run_eval(cfg_path, bag, fixture, tmp_path / "eval")
    want_xyz, _ = _expected(fixture)
    for p in paths:
        xyz, _ = _path_arrays(p)
        assert np.abs(xyz[1:] - want_xyz).max() > 10 * TOL  # 3.7e-3 seen at weight 3


def _with_added_token(model: Path, out: Path, token: str) -> Path:
    """A copy of a release directory whose tokenizer has one more added token (as Qwen3's has
    <think>), which the node's control-token pattern does not catch but the prompt refuses."""
    shutil.copytree(model, out)
    spec = json.loads((out / "tokenizer.json").read_text())
    new_id = max(t["id"] for t in spec["added_tokens"]) + 1
    spec["added_tokens"].append({"id": new_id, "content": token, "single_word": False, "lstrip": False, "rstrip": False,
                                 "normalized": False, "special": False})
    (out / "tokenizer.json").write_text(json.dumps(spec))
    return out


def test_a_route_the_prompt_refuses_is_cleared_in_eval_and_in_the_node(tmp_path, monkeypatch) -> None:
    """A route holding a token the tokenizer added (not one of the control tokens the input
    refuses) is refused by the prompt on the first tick; eval and the node then clear it (counted
    as instruction_refused) and drive without it: the later ticks give what a bag without a route
    gives for the same stacks (the cameras go on 3 frames past the fixture's t0). Before the typed
    RouteRefusedError, eval failed every tick on it."""
    cfg_path, _, fixture = _release_setup("alpamayo1_5", tmp_path, monkeypatch)
    model = _with_added_token(fixture / "model", tmp_path / "model_think", "<think>")
    config = load_config(cfg_path)
    refused_bag, plain_bag = tmp_path / "refused_bag", tmp_path / "plain_bag"
    write_fixture_bag(refused_bag, config, fixture, route="<think>Turn left in 40m", later_frames=3)
    write_fixture_bag(plain_bag, config, fixture, route="", later_frames=3)
    plain, _ = _run_eval(cfg_path, plain_bag, fixture, tmp_path / "eval_plain", model=model, at_t0_only=False)
    by_t0 = {_stamp(p): p for p in plain}
    assert T0_NS in by_t0 and len(by_t0) >= 2, sorted(by_t0)
    assert np.abs(_path_arrays(by_t0[T0_NS])[0][1:] - _expected(fixture)[0]).max() > 10 * TOL  # the route matters
    paths, metrics = _run_eval(cfg_path, refused_bag, fixture, tmp_path / "eval_refused", model=model, at_t0_only=False)
    (bag_metrics,) = metrics["bags"].values()
    assert bag_metrics["ticks_skipped"].get("policy_error/RouteRefusedError") == 1, bag_metrics["ticks_skipped"]
    assert bag_metrics["input_drops"].get("instruction_refused") == 1, bag_metrics["input_drops"]
    assert paths and all(_stamp(p) > T0_NS for p in paths)  # the fixture's tick was the refused one
    for p in paths:
        np.testing.assert_allclose(_path_arrays(p)[0], _path_arrays(by_t0[_stamp(p)])[0], atol=TOL, rtol=0)
    with open(tmp_path / "eval_refused" / "ticks.csv", newline="") as f:
        assert all(r["navigation"] == "" for r in csv.DictReader(f))
    published = _run_node(cfg_path, refused_bag, fixture, tmp_path, model=model, every_path=True)
    planned = []
    for p in published:
        if _stamp(p) in by_t0 and _stamp(p) > T0_NS:
            try:
                _assert_retimed(p, _stamp(p), *_path_arrays(by_t0[_stamp(p)]))
                planned.append(p)
            except AssertionError:  # a stopping fallback, stamped with the clock's time, may share a stamp
                pass
    assert planned, f"none of the node's {len(published)} paths is a later tick's plan without the route"
    log = (tmp_path / "node.log").read_text()
    assert "RouteRefusedError" in log and "the policy refused the navigation" in log, log[-3000:]


def test_node_refuses_configs_the_release_cannot_serve(monkeypatch) -> None:
    """Before the first tick (the real policies, as the node's factory sees them): a navigation
    topic for R1, which takes none; for 1.5, cameras without ids, ids out of the ascending order
    the reference's loader sorts them into, or the same id twice."""
    from vla_ros.config import ConfigError, config_from_dict
    from vla_ros.ros.node_factory import check_policy_fits
    from vla_ros.runtime.policy import Policy

    def cameras(*ids):
        return [{"name": f"c{i}", "topic": f"cam{i}/image/compressed", "camera_id": c} for i, c in enumerate(ids)]

    monkeypatch.setenv(BASE_VLM_ENV, str(FIXTURES / "alpamayo_r1_tiny" / "base_vlm"))
    r1 = Policy.from_pretrained(FIXTURES / "alpamayo_r1_tiny" / "model")
    with pytest.raises(ConfigError, match="navigation.topic.*takes no navigation instruction"):
        check_policy_fits(config_from_dict({"navigation": {"topic": "vla/navigation"}}), r1)
    check_policy_fits(config_from_dict({"cameras": cameras(-1, -1, -1, -1)}), r1)  # R1's prompt names no camera
    monkeypatch.setenv(BASE_VLM_ENV, str(FIXTURES / "alpamayo1_5_tiny" / "base_vlm"))
    a15 = Policy.from_pretrained(FIXTURES / "alpamayo1_5_tiny" / "model")
    check_policy_fits(config_from_dict({"cameras": cameras(0, 1, 6), "navigation": {"topic": "vla/navigation"}}), a15)
    check_policy_fits(config_from_dict({"cameras": cameras(*range(7))}), a15)  # any camera count
    for ids, key in (((0, -1, 6), r"cameras\[1\].camera_id.*not given"), ((1, 0, 6), r"cameras\[1\].camera_id.*ascending"),
                     ((0, 1, 1), r"cameras\[2\].camera_id.*ascending")):
        with pytest.raises(ConfigError, match=key):
            check_policy_fits(config_from_dict({"cameras": cameras(*ids)}), a15)
