"""The drive node under a real ROS 2 (../shared/ros2 in CI, or any sourced distro): colcon build,
`ros2 launch`, the lifecycle, parameters, signals, and our DDS transport and rclpy nodes on one
graph. Every process here is real: colcon, the launch system, the rclpy node and its policy
process, the ROS 2 CLI, `vla-ros play`, and a plain rclpy subscriber (test/ros2_probe.py).

Skipped, visibly, where no ROS 2 is sourced (`source ../shared/ros2/activate` sets it up).
"""
from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

rclpy = pytest.importorskip("rclpy", reason="no ROS 2 (rclpy) sourced; `source ../shared/ros2/activate` to run these tests")
if shutil.which("ros2") is None:
    pytest.skip("no `ros2` CLI on PATH (source a ROS 2 setup)", allow_module_level=True)
pytest.importorskip("colcon_core", reason="colcon is not installed (pip install colcon-common-extensions)")
psutil = pytest.importorskip("psutil")

START_TIMEOUT_S = 120.0  # a loaded 2-core machine: torch import + model load in the node and its policy process
BAG_SECONDS = 16.0


# -- helpers ---------------------------------------------------------------------------------


_claimed: list = []  # open lock files, held for the whole session


def _domain() -> int:
    """A DDS domain no other test run on this machine holds (a lock file per id in the temp
    directory): two `/drive_node`s on one domain would answer each other's `ros2 lifecycle`."""
    ids = list(range(20, 60))
    random.SystemRandom().shuffle(ids)
    for d in ids:
        f = open(Path(tempfile.gettempdir()) / f"vla_ros_test_domain_{d}.lock", "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _claimed.append(f)
        return d
    pytest.fail("no free DDS domain in 20..59 (other test runs hold them all)")


class Ws:
    """A colcon workspace holding only this checkout, built once per test session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.install = root / "install"

    def env(self, domain: int) -> dict[str, str]:
        env = dict(os.environ)
        env["ROS_DOMAIN_ID"] = str(domain)
        env["PYTHONUNBUFFERED"] = "1"
        # `#!/usr/bin/env python3` scripts (ros2, lib/vla_ros/drive_node) must find this Python
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def cmd(self, *argv: str) -> list[str]:
        """argv run with the workspace's install/setup.bash sourced, as a user would."""
        return ["bash", "-c", f'source "{self.install}/setup.bash" && exec "$@"', "vla_ros_test", *argv]

    def run(self, *argv: str, domain: int, timeout: float = 60.0, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(*argv), env=self.env(domain), capture_output=True, text=True, timeout=timeout, cwd=cwd)

    def start(self, *argv: str, domain: int, log: Path | None = None, cwd: Path | None = None) -> subprocess.Popen:
        """A process in its own session (killed with its children at the end of the test, see
        `_no_leftovers`); output to `log`, or to a pipe when no log is given."""
        out = open(log, "w") if log is not None else subprocess.PIPE
        proc = subprocess.Popen(self.cmd(*argv), env=self.env(domain), stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                start_new_session=True, text=True, preexec_fn=_default_sigint)
        _started.append(proc)
        return proc


_started: list[subprocess.Popen] = []


def _default_sigint() -> None:
    """In the child: SIGINT back to its default. A suite started as a background job (`cmd &`
    without job control) inherits SIGINT ignored, and `ros2 launch` would then never see the
    Ctrl-C these tests send it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def _no_leftovers():
    """Whatever a test started is gone when it ends, passed or failed (process groups killed)."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)


@pytest.fixture(scope="session")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Ws:
    root = tmp_path_factory.mktemp("colcon_ws")
    (root / "src").mkdir()
    (root / "src" / "vla_ros").symlink_to(ROOT)
    env = Ws(root).env(0)
    out = subprocess.run([sys.executable, "-m", "colcon", "build", "--packages-select", "vla_ros"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return Ws(root)


@pytest.fixture(scope="session")
def drive_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bags") / "drive"
    res = subprocess.run([sys.executable, "-m", "vla_ros.cli", "sim", "record", "--out", str(out), "--duration", str(BAG_SECONDS),
                          "--width", "128", "--height", "64", "--seed", "7"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return out


class Probe:
    """test/ros2_probe.py in its own process; its JSON lines collected by a reader thread."""

    def __init__(self, ws: Ws, domain: int, seconds: float, log: Path, trajectory: str = "/vla/trajectory",
                 joint_trajectory: str = "") -> None:
        self.lines: list[dict] = []
        self.log = log
        self.proc = subprocess.Popen(ws.cmd(sys.executable, str(ROOT / "test" / "ros2_probe.py"), "--seconds", str(seconds),
                                            "--trajectory", trajectory, "--joint-trajectory", joint_trajectory),
                                     env=ws.env(domain), stdout=subprocess.PIPE, stderr=open(log, "w"), text=True, start_new_session=True)
        _started.append(self.proc)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        wait_for(lambda: any(m["topic"] == "ready" for m in list(self.lines)), 60, "the rclpy probe to start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except json.JSONDecodeError:
                pass

    def of(self, topic: str, since: float = 0.0) -> list[dict]:
        return [m for m in list(self.lines) if m["topic"] == topic and m["t"] >= since]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wait_for(pred: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.2)
    tail = "" if log is None or not log.exists() else "\nlog:\n" + log.read_text()[-4000:]
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{tail}")


def lifecycle_state(ws: Ws, domain: int, node: str = "/drive_node") -> str:
    res = ws.run("ros2", "lifecycle", "get", "--no-daemon", node, domain=domain)
    return res.stdout.split(" ")[0].strip() if res.returncode == 0 else f"<error: {res.stderr.strip()[-200:]}>"


def lifecycle_set(ws: Ws, domain: int, transition: str, node: str = "/drive_node", timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess:
    return ws.run("ros2", "lifecycle", "set", "--no-daemon", node, transition, domain=domain, timeout=timeout)


def gone(procs: list[psutil.Process], timeout: float = 15.0) -> bool:
    """True once every process in `procs` has exited (zombies reaped by their parent count)."""
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return all(p.status() == psutil.STATUS_ZOMBIE for p in alive if p.is_running())


def policy_processes(pid: int) -> list[psutil.Process]:
    """The node's spawned policy processes (multiprocessing children)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [c for c in children if "spawn_main" in " ".join(c.cmdline())]


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        pytest.fail(f"process did not end within {timeout:.0f} s of signal {sig}")


def node_argv(ws: Ws, *params: str) -> list[str]:
    """The node as launch starts it: the installed lib/vla_ros/drive_node with --ros-args."""
    args: list[str] = [str(ws.install / "vla_ros" / "lib" / "vla_ros" / "drive_node"), "--ros-args"]
    for p in params:
        args += ["-p", p]
    return args


# -- tests ----------------------------------------------------------------------------------


def test_colcon_build_installs_the_node_launch_config_and_model(ws: Ws) -> None:
    prefix = ws.install / "vla_ros"
    assert os.access(prefix / "lib" / "vla_ros" / "drive_node", os.X_OK)  # ros2 run / launch look here
    assert (prefix / "bin" / "vla-ros").exists()
    share = prefix / "share" / "vla_ros"
    for rel in ("package.xml", "launch/drive.launch.py", "launch/arm.launch.py", "config/drive.yaml", "config/arm.yaml",
                "models/drive-tiny/config.json",
                "models/drive-tiny/model.safetensors"):
        assert (share / rel).is_file(), rel
    res = ws.run("ros2", "pkg", "executables", "vla_ros", domain=_domain())
    assert "vla_ros drive_node" in res.stdout, res.stdout + res.stderr
    res = ws.run("vla-ros", "--version", domain=_domain())
    assert res.returncode == 0, res.stderr


def test_launch_replayed_bag_in_path_out_heard_by_rclpy_ros2_cli_and_dds(ws: Ws, drive_bag: Path, tmp_path: Path) -> None:
    """`ros2 launch` with autostart reaches active, finds the bundled model in the package share
    (run from an empty directory), follows /clock from `vla-ros play --clock`, and publishes
    Paths that an rclpy node, `ros2 topic echo` and our DDS transport all receive; diagnostics
    are heard; then a camera stops and the fallback engages."""
    domain = _domain()
    log = tmp_path / "launch.log"
    launch = ws.start("ros2", "launch", "vla_ros", "drive.launch.py", "use_sim_time:=true", domain=domain, log=log, cwd=tmp_path)
    probe = Probe(ws, domain, seconds=240, log=tmp_path / "probe.log")
    play = None
    try:
        wait_for(lambda: lifecycle_state(ws, domain) == "active", START_TIMEOUT_S, "drive_node to become active", log)
        assert "using the installed" in log.read_text()  # the model came from share/vla_ros/models
        echo = ws.start("ros2", "topic", "echo", "--no-daemon", "--once", "/vla/trajectory", "nav_msgs/msg/Path", domain=domain)
        dds_echo = ws.start("vla-ros", "topic", "echo", "/vla/trajectory", "--type", "nav_msgs/msg/Path", "--qos", "default",
                            "--count", "1", "--json", domain=domain)
        t_play = time.monotonic()
        play = ws.start("vla-ros", "play", "--bag", str(drive_bag), "--clock", "--start-delay", "1", domain=domain, log=tmp_path / "play.log")
        wait_for(lambda: len(probe.of("path", t_play)) >= 3, 90, "Paths at the rclpy probe", log)
        path = probe.of("path", t_play)[-1]
        assert path["frame_id"] == "odom" and path["n_poses"] > 10
        assert 1000e9 <= path["stamp_ns"] <= (1000 + BAG_SECONDS + 5) * 1e9  # sim time from the bag's /clock
        out, _ = echo.communicate(timeout=60)
        assert "frame_id: odom" in out and "poses:" in out, out[-2000:]
        dds_out, _ = dds_echo.communicate(timeout=60)
        assert '"frame_id": "odom"' in dds_out, dds_out[-2000:]
        wait_for(lambda: len(probe.of("diagnostics", t_play)) >= 2, 30, "/diagnostics at the rclpy probe", log)
        names = set(probe.of("diagnostics")[-1]["statuses"])
        assert {"vla_ros: model", "vla_ros: inputs", "vla_ros: inference", "vla_ros: control"} <= names

        def policy_ran() -> bool:  # the first Paths may be the start-up fallback; wait for the policy's own
            return any(int(d["statuses"]["vla_ros: inference"]["values"]["ticks_run"]) > 0 for d in probe.of("diagnostics", t_play))

        wait_for(policy_ran, 120, "an inference tick in the diagnostics", log)
        assert stop(play) == 0

        # the same drive again without the front camera: the clock jumps back, the inputs go stale
        t_cut = time.monotonic()
        topics = [t for t in ("/cameras/cross_left/image_raw/compressed", "/cameras/cross_right/image_raw/compressed",
                              "/cameras/front_tele/image_raw/compressed", "/ego/odom")]
        play = ws.start("vla-ros", "play", "--bag", str(drive_bag), "--clock", "--topics", *topics, domain=domain, log=tmp_path / "play2.log")

        def fallback() -> bool:
            recent = probe.of("diagnostics", t_cut)
            return any(d["statuses"]["vla_ros: control"]["values"].get("fallback_active") == "true"
                       and d["statuses"]["vla_ros: inputs"]["level"] == 1 for d in recent)

        wait_for(fallback, 60, "the fallback after the front camera stopped", log)
        jumps = [int(d["statuses"]["vla_ros: inputs"]["values"]["time_jumps"]) for d in probe.of("diagnostics", t_cut)]
        assert max(jumps) == 1, jumps  # the replay's /clock went back once: buffers reset once
        assert stop(play) == 0
        play = None

        # autostart activates once: a manual cleanup and configure leave the node inactive
        for transition in ("deactivate", "cleanup", "configure"):
            res = lifecycle_set(ws, domain, transition)
            assert "Transitioning successful" in res.stdout, res.stdout + res.stderr
        time.sleep(3)
        assert lifecycle_state(ws, domain) == "inactive"
    finally:
        if play is not None:
            stop(play)
        probe.close()
        rc = stop(launch)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "Traceback" not in text, text[-4000:]
    assert "process has finished cleanly" in text
    assert "while the node's publishers are not enabled" not in text  # nothing handed over before activation
    assert "type hash" not in text.lower()  # rmw_cyclonedds found our endpoints' RIHS01 hashes


@pytest.fixture(scope="session")
def arm_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bags") / "arm"
    res = subprocess.run([sys.executable, "-m", "vla_ros.cli", "pattern-bag", "--arm", "--config", str(ROOT / "config" / "arm.yaml"),
                          "--out", str(out), "--duration", str(BAG_SECONDS), "--instruction", "pick up the cube"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return out


def test_arm_launch_replayed_arm_bag_in_joint_commands_out_at_control_rate(ws: Ws, arm_bag: Path, tmp_path: Path) -> None:
    """An arm under real ROS 2: `ros2 launch vla_ros arm.launch.py` with the installed config/arm.yaml and the LeRobot
    pi0 fixture, a replayed arm bag (cameras, joint states, the latched instruction, /clock) in;
    trajectory_msgs/JointTrajectory commands for joint_trajectory_controller out, heard by an
    rclpy node: in the configured joint order, one point each, 50 Hz, from policy chunks."""
    domain = _domain()
    log = tmp_path / "launch.log"
    share = ws.install / "vla_ros" / "share" / "vla_ros"
    topic = "/joint_trajectory_controller/joint_trajectory"
    from test_arm_node_dds import arm_test_config
    # the installed config/arm.yaml with the joint limits widened for the random-weight fixture
    config = arm_test_config(tmp_path / "arm.yaml", source=share / "config" / "arm.yaml")
    launch = ws.start("ros2", "launch", "vla_ros", "arm.launch.py", f"config:={config}",
                      f"model:={ROOT / 'test' / 'fixtures' / 'lerobot_pi0_tiny'}", "use_sim_time:=true", domain=domain, log=log, cwd=tmp_path)
    probe = Probe(ws, domain, seconds=240, log=tmp_path / "probe.log", joint_trajectory=topic)
    play = None
    try:
        wait_for(lambda: lifecycle_state(ws, domain) == "active", START_TIMEOUT_S, "the arm node to become active", log)
        t_play = time.monotonic()
        play = ws.start("vla-ros", "play", "--bag", str(arm_bag), "--clock", "--start-delay", "1", "--topics", "/cameras/top/image_raw/compressed",
                        "/cameras/wrist/image_raw/compressed", "/joint_states", "/vla/instruction", domain=domain, log=tmp_path / "play.log")

        def chunks(n: int) -> bool:
            return any(int(d["statuses"]["vla_ros: control"]["values"].get("chunks_accepted", "0")) >= n
                       for d in probe.of("diagnostics", t_play))

        wait_for(lambda: chunks(3), 150, "three chunks accepted (diagnostics)", log)
        t_a = time.monotonic()
        wait_for(lambda: len(probe.of("joints", t_a)) >= 100, 60, "100 joint commands at the rclpy probe", log)
        cmds = probe.of("joints", t_a)
        assert all(c["joint_names"] == [f"joint{i}" for i in range(1, 7)] and c["n_points"] == 1 for c in cmds)
        assert all(len(c["positions"]) == 6 and all(abs(x) <= 3.0 for x in c["positions"]) for c in cmds)
        stamps = [c["stamp_ns"] for c in cmds]
        assert stamps == sorted(stamps) and 1000e9 <= stamps[0] <= (1000 + BAG_SECONDS + 5) * 1e9  # sim time from the bag
        period = np.median(np.diff(stamps)) / 1e9
        assert period == pytest.approx(0.02, rel=0.25), period  # 50 Hz in the node's (sim) time
        control = probe.of("diagnostics", t_a)[-1]["statuses"]["vla_ros: control"]
        assert control["values"]["instruction"] == "pick up the cube", control
        assert "input_age_s/joint_states" in probe.of("diagnostics", t_a)[-1]["statuses"]["vla_ros: inputs"]["values"]
        assert stop(play) == 0
        play = None
    finally:
        if play is not None:
            stop(play)
        probe.close()
        rc = stop(launch)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "Traceback" not in text, text[-4000:]


def test_lifecycle_walk_parameters_namespace_and_one_policy_process(ws: Ws, tmp_path: Path) -> None:
    """configure / activate / deactivate / cleanup / configure again with `ros2 lifecycle set`;
    a transition from the wrong state is refused; -p overrides (an int for a float key) are
    accepted and listed; in a namespace the topics move; never more than one policy process."""
    domain = _domain()
    log = tmp_path / "node.log"
    node = ws.start(*node_argv(ws, "model:=random:tiny", "inference.rate_hz:=4"), "-r", "__ns:=/car1", domain=domain, log=log, cwd=tmp_path)
    name = "/car1/drive_node"
    try:
        wait_for(lambda: lifecycle_state(ws, domain, name) == "unconfigured", 60, "the node to come up", log)
        res = lifecycle_set(ws, domain, "activate", name)
        assert "Transitioning successful" not in res.stdout
        assert lifecycle_state(ws, domain, name) == "unconfigured"  # activate from unconfigured is refused, as ROS refuses it
        assert policy_processes(node.pid) == []
        for transition, state, n_policy in (("configure", "inactive", 1), ("activate", "active", 1), ("deactivate", "inactive", 1),
                                            ("cleanup", "unconfigured", 0), ("configure", "inactive", 1)):
            res = lifecycle_set(ws, domain, transition, name)
            assert res.returncode == 0 and "Transitioning successful" in res.stdout, res.stdout + res.stderr + log.read_text()[-2000:]
            assert lifecycle_state(ws, domain, name) == state
            wait_for(lambda n=n_policy: len(policy_processes(node.pid)) == n, 30, f"{n_policy} policy process(es) after {transition}", log)
        res = ws.run("ros2", "param", "get", "--no-daemon", name, "inference.rate_hz", domain=domain)
        assert res.returncode == 0 and "value is: 4" in res.stdout, res.stdout + res.stderr  # an int, accepted for a float key
        res = ws.run("ros2", "param", "list", "--no-daemon", name, domain=domain)
        for key in ("frames.tolerance_s", "ego.odometry_topic", "outputs.trajectory_topic", "navigation.guidance_weight", "model",
                    "use_sim_time"):
            assert key in res.stdout, key
        res = ws.run("ros2", "param", "get", "--no-daemon", name, "outputs.trajectory_topic", domain=domain)
        assert "/car1/vla/trajectory" in res.stdout, res.stdout
        res = lifecycle_set(ws, domain, "activate", name)
        assert "Transitioning successful" in res.stdout
        topics = ws.run("ros2", "topic", "list", "--no-daemon", domain=domain).stdout.split()
        assert "/car1/vla/trajectory" in topics and "/car1/ego/odom" in topics and "/diagnostics" in topics, topics
        # a best-effort odometry publisher (as many drivers offer) is heard
        pub = ws.start("ros2", "topic", "pub", "-r", "20", "--qos-reliability", "best_effort", "/car1/ego/odom", "nav_msgs/msg/Odometry",
                       "{header: {stamp: now, frame_id: odom}, child_frame_id: base_link, pose: {pose: {orientation: {w: 1.0}}}}",
                       domain=domain, log=tmp_path / "pub.log")
        try:
            def odometry_heard() -> bool:
                res = ws.run("ros2", "topic", "echo", "--no-daemon", "--once", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray",
                             domain=domain, timeout=30)
                lines = res.stdout.splitlines()
                return any("input_age_s/odometry" in ln and "never" not in lines[i + 1] for i, ln in enumerate(lines[:-1]))

            wait_for(odometry_heard, 60, "odometry from a best-effort publisher in the diagnostics", log)
        finally:
            stop(pub)
    finally:
        children = policy_processes(node.pid)
        rc = stop(node, signal.SIGTERM)
    text = log.read_text()
    assert rc == 0 and "Traceback" not in text, text[-3000:]
    assert len(children) == 1 and gone(children)  # the policy process ended with the node


@pytest.mark.parametrize(
    "params, words",
    [
        (["model:=random:tiny", "frames.tolerance_s:=-1.0"], "frames.tolerance_s"),
        (["model:=/nonexistent/checkpoint"], "/nonexistent/checkpoint"),
        (["model:=random:tiny", "outputs.trajectory_topic:=bad//name"], "outputs.trajectory_topic"),
        # an optional key left null in the YAML is declared, so the override reaches the policy
        (["model:=random:tiny", "navigation.guidance_weight:=2.0"], "takes no navigation instruction"),
    ],
)
def test_bad_configuration_leaves_the_node_unconfigured_with_the_reason(ws: Ws, tmp_path: Path, params: list[str], words: str) -> None:
    domain = _domain()
    log = tmp_path / "node.log"
    node = ws.start(*node_argv(ws, *params), domain=domain, log=log, cwd=tmp_path)
    try:
        wait_for(lambda: lifecycle_state(ws, domain) == "unconfigured", 60, "the node to come up", log)
        res = lifecycle_set(ws, domain, "configure")
        assert "Transitioning successful" not in res.stdout
        assert lifecycle_state(ws, domain) == "unconfigured"
        wait_for(lambda: "configure failed" in log.read_text(), 30, "the reason on the ROS logger", log)
        line = next(ln for ln in log.read_text().splitlines() if "configure failed" in ln)
        assert words in line and "[ERROR]" in line, line
        assert policy_processes(node.pid) == []
    finally:
        rc = stop(node, signal.SIGINT)
    assert rc == 0 and "Traceback" not in log.read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_end_an_active_node_cleanly(ws: Ws, tmp_path: Path, sig: int) -> None:
    """`vla-ros node --transport ros` (autostart): SIGINT or SIGTERM -> exit 0, no traceback, the
    policy process gone."""
    domain = _domain()
    log = tmp_path / "node.log"
    node = ws.start("vla-ros", "node", "--transport", "ros", "--model", "random:tiny", "--status-every", "1", domain=domain, log=log, cwd=tmp_path)
    wait_for(lambda: "] active" in log.read_text() or "]: active" in log.read_text(), START_TIMEOUT_S, "the node to become active", log)
    wait_for(lambda: "ticks run" in log.read_text(), 30, "a status line (--status-every on --transport ros)", log)
    children = policy_processes(node.pid)
    assert len(children) == 1
    rc = stop(node, sig)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "Traceback" not in text and "Exception" not in text, text[-3000:]
    assert gone(children)
    # the core's own log lines reach the ROS logger (console and /rosout), tagged with the node
    assert any("[WARN]" in ln and "[drive_node]" in ln and "safe fallback engaged" in ln for ln in text.splitlines()), text[-2000:]
    assert "while the node's publishers are not enabled" not in text  # enabled before the core's first message


def test_duration_ends_the_ros_node_by_itself(ws: Ws, tmp_path: Path) -> None:
    domain = _domain()
    log = tmp_path / "node.log"
    node = ws.start("vla-ros", "node", "--transport", "ros", "--model", "random:tiny", "--device", "cpu", "--duration", "3",
                    domain=domain, log=log, cwd=tmp_path)
    try:
        rc = node.wait(START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stop(node)
        pytest.fail("--duration did not end the node:\n" + log.read_text()[-2000:])
    text = log.read_text()
    assert rc == 0 and "Traceback" not in text, text[-2000:]
    assert "(torch, cpu)" in text  # --device reached the node as its `device` parameter
