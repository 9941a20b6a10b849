"""The arm node end to end over real DDS on loopback: `vla-ros node` with config/arm.yaml and the
LeRobot pi0 fixture checkpoint in its own process, fed live cameras, joint states and an
instruction from this process; the joint commands, latency and diagnostics read back here."""
from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("cyclonedds", reason="cyclonedds is not installed: the DDS end-to-end tests need it")

from test_node_dds import NODE_START_TIMEOUT_S, Recorder, _domain, _env, _stamp, _stop  # noqa: E402
from vla_ros.config import Config, load_config  # noqa: E402
from vla_ros.ros import messages  # noqa: E402
from vla_ros.ros.dds_transport import DdsTransport  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARM_YAML = ROOT / "config" / "arm.yaml"
JOINTS = [f"joint{i}" for i in range(1, 7)]
MAX_VELOCITY = 20.0


def arm_test_config(path: Path, source: Path = ARM_YAML, **arm: object) -> Path:
    """config/arm.yaml for this CPU: the fixture policy takes a few hundred ms per chunk beside
    the publishers, so the input age limit is widened (the default, 0.5 s, is for a GPU); its
    weights are random, its chunks move faster than a real arm's limits allow, so the joint
    limits are widened too. `arm` replaces further keys of the arm section."""
    data = yaml.safe_load(Path(source).read_text())
    data["safety"] = {"max_input_age_s": 1.0, "max_output_age_s": 2.0}
    data["arm"]["limits"] = {"position_min": [-6.0], "position_max": [6.0], "max_velocity": [MAX_VELOCITY], "max_acceleration": [5000.0]}
    data["arm"].update(arm)
    path.write_text(yaml.safe_dump(data))
    return path


def _arm_node(tmp_path: Path, domain: int, **arm: object) -> subprocess.Popen:
    cfg = arm_test_config(tmp_path / "arm.yaml", **arm)
    log = open(tmp_path / "node.log", "w")
    return subprocess.Popen([sys.executable, "-m", "vla_ros.cli", "node", "--transport", "dds", "--config", str(cfg),
                             "--status-every", "1"], env=_env(domain), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


class ArmOutputs(Recorder):
    """Joint commands (trajectory_msgs/JointTrajectory) and diagnostics from the arm node."""

    def __init__(self, dds: DdsTransport, config: Config) -> None:
        super().__init__(dds)
        self.commands: list[tuple[float, object]] = []
        dds.subscribe(config.arm.joint_trajectory_topic, messages.JOINT_TRAJECTORY, self._command)

    def _command(self, msg) -> None:
        with self.lock:
            self.commands.append((time.monotonic(), msg))

    def since(self, t: float) -> list:
        with self.lock:
            return [m for a, m in self.commands if a >= t]


def _joint_positions(t_s: float) -> np.ndarray:
    return 0.4 * np.sin(0.5 * t_s + np.arange(6))


class ArmPublisher:
    """Cameras at 20 Hz, joint states at 100 Hz (system clock), the instruction latched."""

    def __init__(self, dds: DdsTransport, config: Config) -> None:
        self.cams = [dds.publisher(c.topic, "sensor_msgs/msg/CompressedImage", qos="sensor") for c in config.cameras]
        self.joints = dds.publisher(config.arm.joint_state_topic, messages.JOINT_STATE)
        self.instruction = dds.publisher(config.arm.instruction_topic, "std_msgs/msg/String", qos="latched")
        rng = np.random.default_rng(0)
        self.jpegs = [messages.encode_jpeg(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)) for _ in config.cameras]
        self.names = list(reversed(JOINTS)) + ["gripper_extra"]  # another order, and a joint the model does not use
        self.joints_on = threading.Event()
        self.joints_on.set()
        self.bad_state: str | None = None  # 'nan' | 'missing': the next joint state is broken that way
        self.stop = threading.Event()
        self.t_start = time.time_ns()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def say(self, text: str) -> None:
        self.instruction.publish(messages.string(text))

    def _run(self) -> None:
        k = 0
        while not self.stop.is_set():
            now = time.time_ns()
            if self.joints_on.is_set():
                q = _joint_positions((now - self.t_start) / 1e9)
                pos = list(q[::-1]) + [0.0]
                names = self.names
                if self.bad_state == "nan":
                    pos[2] = math.nan
                elif self.bad_state == "missing":
                    names, pos = names[1:], pos[1:]
                self.bad_state = None
                self.joints.publish(messages.joint_state(now, names, pos, np.zeros(len(pos))))
            if k % 5 == 0:
                for pub, cam, jpeg in zip(self.cams, ("top", "wrist"), self.jpegs):
                    pub.publish(messages.compressed_image(now, cam, jpeg))
            k += 1
            time.sleep(max(0.0, 0.01 - (time.time_ns() - now) / 1e9))


def _positions(msgs: list) -> np.ndarray:
    return np.array([m.points[0].positions for m in msgs])


def test_arm_node_commands_joints_from_chunks_holds_when_joint_states_stop_and_recovers(tmp_path):
    domain = _domain()
    config = load_config(ARM_YAML)
    proc = _arm_node(tmp_path, domain)
    log = tmp_path / "node.log"
    try:
        with DdsTransport(domain_id=domain) as dds:
            out = ArmOutputs(dds, config)
            live = ArmPublisher(dds, config)
            try:
                # 0. no instruction yet: the node holds (inputs flow, no chunk is computed)
                out.wait_for(lambda: len(out.commands) > 10, NODE_START_TIMEOUT_S, "hold commands before an instruction", log)
                first = out.since(0)
                assert all(np.allclose(m.points[0].velocities, 0.0) for m in first)
                assert any(d.get("hold_active") == "true" for d in out.diag_since(0)) or not out.diags
                # 1. an instruction (latched): chunks follow, commands at 50 Hz from them
                live.say("pick up the cube")
                out.wait_for(lambda: any(int(d.get("chunks_accepted", "0")) >= 3 for d in out.diag_since(0)), 60.0, "three chunks", log)
                t_a = time.monotonic()
                time.sleep(2.0)
                window = out.since(t_a)
                assert len(window) >= 50, f"{len(window)} commands in 2 s (control rate 50 Hz)"
                for m in window:
                    assert list(m.joint_names) == JOINTS
                    assert len(m.points) == 1 and len(m.points[0].positions) == 6 and len(m.points[0].velocities) == 6
                    assert np.all(np.isfinite(m.points[0].positions)) and np.all(np.abs(m.points[0].positions) <= 6.0)
                    d = m.points[0].time_from_start
                    assert d.sec == 0 and d.nanosec == 20_000_000  # reached one control period later
                stamps = [_stamp(m) for m in window]
                assert stamps == sorted(stamps)
                pos = _positions(window)
                gaps = np.diff(stamps) / 1e9
                steps = np.abs(np.diff(pos, axis=0)).max(axis=1)
                # smooth: no step beyond the velocity limit over the time between two commands
                assert np.all(steps <= MAX_VELOCITY * np.maximum(gaps, 0.02) * 1.05 + 1e-9), steps.max()
                diag = out.diag_since(t_a)[-1]
                assert diag["instruction"] == "pick up the cube" and diag["hold_active"] == "false"
                assert int(diag["instruction_changes"]) == 1
                # 2. bad joint states are counted drops, never a crash
                live.bad_state = "nan"
                time.sleep(0.2)
                live.bad_state = "missing"
                out.wait_for(lambda: any(int(d.get("dropped/not_finite", "0")) >= 1 and int(d.get("dropped/joint_missing", "0")) >= 1
                                         for d in out.diag_since(t_a)), 10.0, "bad joint states counted", log)
                # 3. joint states stop: hold the last commanded position, zero velocity
                live.joints_on.clear()
                t_stop = time.monotonic()
                out.wait_for(lambda: any(d.get("hold_active") == "true" for d in out.diag_since(t_stop)), 10.0, "hold in diagnostics", log)
                time.sleep(0.5)
                held = out.since(time.monotonic() - 0.3)
                assert len(held) >= 5
                assert np.allclose(_positions(held), _positions(held)[0]) and all(np.allclose(m.points[0].velocities, 0.0) for m in held)
                # 4. joint states return: chunks again
                live.joints_on.set()
                t_resume = time.monotonic()
                out.wait_for(lambda: any(d.get("hold_active") == "false" for d in out.diag_since(t_resume)), 30.0, "recovery", log)
                # 5. a new, over-long instruction: used, counted as cut to the model's token budget
                live.say("stack the blocks " * 60)
                out.wait_for(lambda: any(int(d.get("instruction_truncations", "0")) >= 1 for d in out.diag_since(t_resume)), 30.0,
                             "the long instruction counted", log)
                diag = out.diag_since(t_resume)[-1]
                assert int(diag["instruction_changes"]) == 2
                assert int(diag["ticks_run"]) >= 3 and diag["latency_ms_p50"] != "n/a"
            finally:
                live.stop.set()
                live.thread.join(2)
    finally:
        assert _stop(proc, tmp_path) == 0
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_replayed_arm_bag_gives_pi05_joint_commands_at_50_hz_of_bag_time(tmp_path, backend):
    """A recorded arm bag (`vla-ros pattern-bag --arm`) replayed with `vla-ros play --clock`
    into the node in sim time with the pi0.5 fixture (on torch, and on its ONNX export with the
    RTC guide applied host-side): commands stamped in the bag's time, 50 Hz of it, from accepted
    chunks, smooth within the velocity limit."""
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
    domain = _domain()
    config = load_config(ARM_YAML)
    bag = tmp_path / "arm_bag"
    res = subprocess.run([sys.executable, "-m", "vla_ros.cli", "pattern-bag", "--arm", "--config", str(ARM_YAML), "--out", str(bag),
                          "--duration", "10", "--instruction", "stack the cubes"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    cfg = arm_test_config(tmp_path / "arm.yaml")
    log_path = tmp_path / "node.log"
    proc = subprocess.Popen([sys.executable, "-m", "vla_ros.cli", "node", "--transport", "dds", "--config", str(cfg), "--use-sim-time",
                             "--backend", backend,
                             "--model", str(ROOT / "test" / "fixtures" / "lerobot_pi05_tiny"), "--status-every", "1"],
                            env=_env(domain), stdout=open(log_path, "w"), stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        with DdsTransport(domain_id=domain) as dds:
            out = ArmOutputs(dds, config)
            out.wait_for(lambda: "arm node running" in log_path.read_text(), NODE_START_TIMEOUT_S, "node start", log_path)
            topics = [c.topic for c in config.cameras] + [config.arm.joint_state_topic, config.arm.instruction_topic]
            play = subprocess.run([sys.executable, "-m", "vla_ros.cli", "play", "--bag", str(bag), "--transport", "dds", "--clock",
                                   "--wait-subscribers", "20", "--start-delay", "0.5", "--topics", *topics],
                                  env=_env(domain), capture_output=True, text=True, timeout=120)
            assert play.returncode == 0, play.stderr[-2000:]
            time.sleep(0.5)
            diags = out.diag_since(0)
            assert diags and max(int(d.get("chunks_accepted", "0")) for d in diags) >= 3, log_path.read_text()[-3000:]
            assert any(d.get("instruction") == "stack the cubes" for d in diags)
            cmds = [m for m in out.since(0) if not np.allclose(m.points[0].velocities, 0.0)]  # following a chunk
            assert len(cmds) >= 50
            stamps = np.array([_stamp(m) for m in cmds])
            assert np.all(np.diff(stamps) > 0) and 999e9 < stamps[0] and stamps[-1] < 1020e9  # the bag's time, not the wall clock
            assert np.median(np.diff(stamps)) == pytest.approx(20e6, rel=0.1)  # 50 Hz of bag time
            pos = _positions(cmds)
            gaps = np.diff(stamps) / 1e9
            steps = np.abs(np.diff(pos, axis=0)).max(axis=1)
            k = int(np.argmax(steps / np.maximum(gaps, 0.02)))
            assert steps[k] <= MAX_VELOCITY * max(gaps[k], 0.02) * 1.05 + 1e-9, \
                f"step {steps[k]:.3f} between {stamps[k]} and {stamps[k + 1]}; log: " + log_path.read_text()[-3000:]
    finally:
        assert _stop(proc, tmp_path) == 0
    assert "Traceback" not in log_path.read_text()


@pytest.mark.parametrize("config, model, words", [
    (str(ARM_YAML), "random:tiny", "config key 'control.mode': chunk, but the model drives a path"),
    (None, str(ROOT / "test" / "fixtures" / "lerobot_pi0_tiny"), "config key 'control.mode': trajectory, but the model outputs action chunks"),
])
def test_a_model_that_cannot_serve_the_mode_stops_the_node_with_the_key(tmp_path, config, model, words):
    argv = [sys.executable, "-m", "vla_ros.cli", "node", "--transport", "dds", "--model", model, "--duration", "5"]
    res = subprocess.run(argv + (["--config", config] if config else []), env=_env(_domain()), capture_output=True, text=True,
                         timeout=NODE_START_TIMEOUT_S, cwd=ROOT)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert words in res.stderr, res.stderr[-2000:]


def test_the_mode_check_names_joint_count_and_mode_mismatches():
    """check_policy_fits against the policy's own declaration (what the policy process reports)."""
    from types import SimpleNamespace

    from vla_ros.config import ConfigError
    from vla_ros.ros.node_factory import check_policy_fits

    arm = load_config(ARM_YAML)
    two_cameras = SimpleNamespace(image=SimpleNamespace(num_cameras=2))
    check_policy_fits(arm, SimpleNamespace(config=two_cameras, robot_dims=(6, 6)))
    with pytest.raises(ConfigError, match="arm.joint_names.*6 joints, the model takes a state of 7 and outputs 7"):
        check_policy_fits(arm, SimpleNamespace(config=two_cameras, robot_dims=(7, 7)))
    with pytest.raises(ConfigError, match="cameras.*lists 2 cameras, the model takes 3"):
        check_policy_fits(arm, SimpleNamespace(config=SimpleNamespace(image=SimpleNamespace(num_cameras=3)), robot_dims=(6, 6)))
    drive = load_config(None)
    with pytest.raises(ConfigError, match="control.mode.*outputs action chunks"):
        check_policy_fits(drive, SimpleNamespace(config=SimpleNamespace(image=SimpleNamespace(num_cameras=4)), robot_dims=(6, 6)))
    check_policy_fits(drive, SimpleNamespace(config=SimpleNamespace(image=SimpleNamespace(num_cameras=4)), robot_dims=None))
