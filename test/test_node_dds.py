"""The drive node end to end over real DDS on loopback, in separate processes: `vla-ros node`
with the random:tiny policy, fed by a live publisher (system clock) or by `vla-ros play --clock`
(sim time); outputs read by a subscriber in this process."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="cyclonedds is not installed: the DDS end-to-end tests need it")

from vla_ros.config import Config, load_config  # noqa: E402
from vla_ros.replay.pattern_bag import PatternBagSpec, pattern_image, write_pattern_bag  # noqa: E402
from vla_ros.ros import messages  # noqa: E402
from vla_ros.ros.dds_transport import DdsTransport  # noqa: E402
from vla_ros.sensors.geometry import yaw_to_quat  # noqa: E402

NODE_START_TIMEOUT_S = 120.0  # importing torch + building the model on a loaded 2-core machine


_used_domains: set[int] = set()


def _domain() -> int:
    """A domain of its own per test. On Linux only ids 0..101 keep Cyclone's ports out of the
    ephemeral range; the DDS transport tests draw from 20..101 at random, so collisions are
    possible but harmless (extra, unrelated topics)."""
    d = 60 + (os.getpid() + int(time.time())) % 42
    while d in _used_domains:
        d = 60 + (d - 59) % 42
    _used_domains.add(d)
    return d


def _env(domain: int) -> dict[str, str]:
    return {**os.environ, "ROS_DOMAIN_ID": str(domain), "PYTHONUNBUFFERED": "1"}


# This CPU runs random:tiny at a few hundred ms per tick while the test publishes beside it;
# the watchdog ages are widened accordingly (the defaults, 0.5 s, are for a GPU).
MAX_INPUT_AGE_S = 1.0
TEST_CONFIG = f"safety: {{max_input_age_s: {MAX_INPUT_AGE_S}, max_output_age_s: 2.0}}\n"


def _node(tmp_path: Path, domain: int, *extra: str) -> subprocess.Popen:
    log = open(tmp_path / "node.log", "w")
    cfg = tmp_path / "node.yaml"
    cfg.write_text(TEST_CONFIG)
    return subprocess.Popen(
        [sys.executable, "-m", "vla_ros.cli", "node", "--transport", "dds", "--model", "random:tiny", "--config", str(cfg), "--status-every", "1", *extra],
        env=_env(domain),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen, tmp_path: Path) -> int:
    proc.terminate()
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("node did not stop on SIGTERM:\n" + (tmp_path / "node.log").read_text()[-3000:])


class Recorder:
    """Messages received from the node with their arrival times; /diagnostics as key -> value."""

    def __init__(self, dds: DdsTransport) -> None:
        self.diags: list[tuple[float, dict[str, str]]] = []
        self.lock = threading.Lock()
        dds.subscribe("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", self._diag)

    def _diag(self, msg) -> None:
        values = {kv.key: kv.value for status in msg.status for kv in status.values}
        with self.lock:
            self.diags.append((time.monotonic(), values))

    def diag_since(self, t: float) -> list[dict[str, str]]:
        with self.lock:
            return [d for a, d in self.diags if a >= t]

    def wait_for(self, pred: Callable[[], bool], timeout: float, what: str, log: Path) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return time.monotonic()
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for {what}; node log:\n" + log.read_text()[-4000:])


class Outputs(Recorder):
    """Trajectories (nav_msgs/Path and the Autoware twin) and diagnostics from the drive node."""

    def __init__(self, dds: DdsTransport) -> None:
        super().__init__(dds)
        self.paths: list[tuple[float, object]] = []
        self.autoware: list[object] = []
        dds.subscribe("/vla/trajectory", "nav_msgs/msg/Path", self._path)
        dds.subscribe("/vla/autoware_trajectory", "autoware_planning_msgs/msg/Trajectory", self.autoware.append)

    def _path(self, msg) -> None:
        with self.lock:
            self.paths.append((time.monotonic(), msg))

    def since(self, t: float) -> list:
        with self.lock:
            return [m for a, m in self.paths if a >= t]


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class LivePublisher:
    """Cameras at 10 Hz and odometry at 50 Hz stamped with the system clock; cameras can pause."""

    def __init__(self, dds: DdsTransport, config: Config) -> None:
        self.config = config
        self.cams = [dds.publisher(c.topic, "sensor_msgs/msg/CompressedImage", qos="sensor") for c in config.cameras]
        self.odom = dds.publisher(config.ego.odometry_topic, "nav_msgs/msg/Odometry")
        self.jpegs = [[messages.encode_jpeg(pattern_image(v, k, 160, 288)) for k in range(5)] for v in range(4)]
        self.camera_stamps: set[int] = set()
        self.cameras_on = threading.Event()
        self.cameras_on.set()
        self.stop = threading.Event()
        self.t_start = time.time_ns()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        k = 0
        while not self.stop.is_set():
            now = time.time_ns()
            x = 5.0 * (now - self.t_start) / 1e9
            self.odom.publish(messages.odometry(now, [x, 0.0, 0.0], yaw_to_quat(0.0), linear=(5.0, 0, 0)))
            if k % 5 == 0 and self.cameras_on.is_set():
                for v, (pub, cam) in enumerate(zip(self.cams, self.config.cameras)):
                    self.camera_stamps.add(now)
                    pub.publish(messages.compressed_image(now, cam.name, self.jpegs[v][(k // 5) % 5]))
            k += 1
            time.sleep(max(0.0, 0.02 - (time.time_ns() - now) / 1e9))


def test_live_node_follows_inputs_falls_back_when_cameras_stop_and_recovers(tmp_path):
    domain = _domain()
    config = load_config(None)
    proc = _node(tmp_path, domain)
    log = tmp_path / "node.log"
    try:
        with DdsTransport(domain_id=domain) as dds:
            out = Outputs(dds)
            live = LivePublisher(dds, config)
            try:
                # 1. inputs flowing: trajectories stamped with input t0s, in the odom frame
                out.wait_for(lambda: any(_stamp(m) in live.camera_stamps for _, m in out.paths), NODE_START_TIMEOUT_S, "a policy trajectory", log)
                t_a = time.monotonic()
                time.sleep(3.0)
                window = out.since(t_a)
                assert len(window) >= 15, f"{len(window)} trajectories in 3 s (control rate 10 Hz)"
                policy = [m for m in window if _stamp(m) in live.camera_stamps]
                assert len(policy) >= 0.8 * len(window)
                for m in policy:
                    assert m.header.frame_id == "odom"
                    stamps = [_stamp(p) for p in m.poses]
                    assert stamps == sorted(stamps) and stamps[0] >= _stamp(m)
                    assert all(p.header.frame_id == "odom" for p in m.poses)
                # the same trajectories as autoware_planning_msgs/Trajectory, with velocities
                def first_time(a) -> int:
                    d = a.points[0].time_from_start
                    return _stamp(a) + d.sec * 1_000_000_000 + d.nanosec

                by_time = {_stamp(m.poses[0]): m for m in policy}
                twins = [a for a in list(out.autoware) if first_time(a) in by_time]
                assert twins
                for a in twins[:5]:
                    path = by_time[first_time(a)]
                    assert _stamp(a) == _stamp(path)
                    assert a.header.frame_id == "odom" and len(a.points) == len(path.poses)
                    assert a.points[1].pose.position.x == pytest.approx(path.poses[1].pose.position.x)
                    assert all(np.isfinite(p.longitudinal_velocity_mps) for p in a.points)
                # 2. cameras stop (odometry continues): the stopping fallback within MAX_INPUT_AGE_S
                live.cameras_on.clear()
                t_stop = time.monotonic()
                out.wait_for(
                    lambda: any(_stamp(m) not in live.camera_stamps for m in out.since(t_stop)), 10.0, "the fallback trajectory", log
                )
                out.wait_for(lambda: any(d.get("fallback_active") == "true" for a, d in out.diags if a > t_stop), 5.0, "fallback in diagnostics", log)
                # in order, on the node's clock (its stamps): the last camera set, then, no earlier than the
                # input age limit after it (less one camera period, should that set have lost a message),
                # the first fallback; from then on only fallbacks until the cameras resume
                last_input = max(live.camera_stamps)
                after_stop = out.since(t_stop)
                first = next(i for i, m in enumerate(after_stop) if _stamp(m) not in live.camera_stamps)
                assert _stamp(after_stop[first]) - last_input > (MAX_INPUT_AGE_S - 0.1) * 1e9
                assert all(_stamp(m) not in live.camera_stamps for m in after_stop[first:])
                fb = [m for m in out.since(t_stop) if _stamp(m) not in live.camera_stamps][-1]  # the newest fallback path
                speeds = np.diff([p.pose.position.x for p in fb.poses])
                assert speeds[0] > speeds[-1] >= -1e-9  # decelerating to a stop along +x
                # 3. cameras resume: policy trajectories again
                live.cameras_on.set()
                t_resume = time.monotonic()
                out.wait_for(lambda: any(_stamp(m) in live.camera_stamps for m in out.since(t_resume)), 20.0, "recovery", log)
                out.wait_for(lambda: any(d.get("fallback_active") == "false" for a, d in out.diags if a > t_resume), 5.0, "recovery in diagnostics", log)
                diag = out.diags[-1][1]
                assert int(diag["ticks_run"]) > 5 and diag["latency_ms_p50"] != "n/a"
                assert int(diag["fallback_activations"]) >= 2  # at start-up, then when cameras stopped
                assert diag["control_thread"] == "normal"  # control.realtime_priority 0 (default): the normal scheduler
            finally:
                live.stop.set()
    finally:
        assert _stop(proc, tmp_path) == 0
    assert "stopped:" in log.read_text()


def test_sim_time_node_with_play_clock_stamps_outputs_with_bag_t0s(tmp_path):
    domain = _domain()
    config = load_config(None)
    bag = tmp_path / "bag"
    spec = PatternBagSpec(duration_s=8.0, height=160, width=288)
    write_pattern_bag(bag, config, spec)
    camera_stamps = {
        round((spec.start_s + k / spec.camera_hz + v * spec.camera_skew_s) * 1e9) for v in range(4) for k in range(int(spec.duration_s * spec.camera_hz) + 1)
    }
    proc = _node(tmp_path, domain, "--use-sim-time")
    log = tmp_path / "node.log"
    try:
        with DdsTransport(domain_id=domain) as dds:
            out = Outputs(dds)
            out.wait_for(lambda: "drive node running" in log.read_text(), NODE_START_TIMEOUT_S, "node start", log)
            play = subprocess.run(
                [sys.executable, "-m", "vla_ros.cli", "play", "--bag", str(bag), "--transport", "dds", "--clock", "--wait-subscribers", "20", "--start-delay", "0.5"],
                env=_env(domain),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert play.returncode == 0, play.stderr[-2000:]
            time.sleep(0.5)
            paths = [m for _, m in out.paths]
            policy = [m for m in paths if _stamp(m) in camera_stamps]
            assert len(policy) >= 10, f"{len(policy)} policy trajectories of {len(paths)} outputs"
            for m in policy:
                assert m.header.frame_id == "odom"
                # sim time: pose stamps continue from bag time, never from the wall clock
                assert 999e9 < _stamp(m.poses[0]) < (spec.start_s + spec.duration_s + 7) * 1e9
    finally:
        assert _stop(proc, tmp_path) == 0
