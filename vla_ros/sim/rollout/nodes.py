"""The node a model episode drives with, behind one interface:

- `LockstepNode`: the node's transport-independent core (`DriveNodeCore`) in this process on a
  sim clock the episode sets; the episode calls its inference and control ticks itself, so sim
  time waits for the policy (reproducible).
- `DdsNode`: the real node as its own process (`vla-ros node --transport dds --use-sim-time`),
  fed over DDS with /clock, the odometry and the cameras; its own timers run the inference
  trigger and the control tick as they do on a car, and the episode follows what it publishes
  on the trajectory topic. Sim time advances at most as fast as real time, so the node's latency
  counts (in sim time: less when this machine cannot keep up). Not reproducible run to run.

Both: `set_time(t)`, `odometry(msg)`, `camera(topic, msg)`, `frames_done(t)`, `control(t) ->
(newest Path or None, fallback active)`, `latency_ms`, `skipped()`, `close()`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from vla_ros.config import Config
from vla_ros.ros.clock import SimClock
from vla_ros.ros.conversions import LATENCY_FIELDS

Record = Callable[[str, Any, int], None]  # (topic, message, sim time) the node published: for rollout.mcap
_LAT = (LATENCY_FIELDS.index("stack_ms"), LATENCY_FIELDS.index("policy_call_ms"))
NODE_START_TIMEOUT_S = 180.0


class LockstepNode:
    def __init__(self, config: Config, policy: Any, model_name: str, record: Record) -> None:
        from vla_ros.ros.node_core import DriveNodeCore

        self.config = config
        self.clock = SimClock()
        self.latency_ms: list[float] = []
        self._record = record
        self._paths: list[Any] = []
        self.core = DriveNodeCore(config, policy, self._publish, self.clock, model_name=model_name, autoware=False)

    def _publish(self, topic: str, msg: Any) -> None:
        out = self.config.outputs
        if topic == out.trajectory_topic:
            self._paths.append(msg)
        elif topic == out.latency_topic:
            self.latency_ms.append(float(msg.data[_LAT[0]]) + float(msg.data[_LAT[1]]))
        self._record(topic, msg, self.clock.now_ns())

    def set_time(self, t_ns: int) -> None:
        self.clock.set(t_ns)

    def odometry(self, msg: Any) -> None:
        self.core.on_message(self.config.ego.odometry_topic, msg)

    def camera(self, topic: str, msg: Any) -> None:
        self.core.on_message(topic, msg)

    def frames_done(self, t_ns: int) -> None:
        self.core.inference_tick(t_ns)  # lockstep: sim time waits for the policy

    def control(self, t_ns: int, warming_up: bool = False) -> tuple[Any, bool]:
        if warming_up and not self.core.controller.stats.accepted:
            return None, False  # nothing to follow yet and nobody following: no start-up fallback warning
        self.core.control_tick(t_ns)
        path = self._paths[-1] if self._paths else None
        self._paths.clear()
        return path, self.core.controller.fallback_active

    def skipped(self) -> dict[str, int]:
        return self.core.skipped_ticks()

    def close(self) -> None:
        self.core.pipeline.close()


class DdsNode:
    def __init__(self, config: Config, model_path: str, record: Record, work_dir: Path) -> None:
        from vla_ros.ros.dds_clock import ClockPublisher
        from vla_ros.ros.dds_transport import DdsTransport

        self.config = config
        self.latency_ms: list[float] = []
        self._record = record
        self._lock = threading.Lock()
        self._path: Any = None
        self._fallback = False
        self._wall0: float | None = None
        self._t0 = 0
        # The node runs the exact config of this rollout (written out, model path included).
        data = config.to_dict()
        data.setdefault("model", {})["path"] = str(Path(model_path).resolve()) if Path(model_path).exists() else model_path
        fd, cfg_path = tempfile.mkstemp(prefix="rollout_node_", suffix=".yaml", dir=work_dir)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(data, f)
        self._cfg_path = cfg_path
        self._log = open(Path(cfg_path).with_suffix(".log"), "w+b")  # noqa: SIM115 - read back on failure
        self.proc = subprocess.Popen([sys.executable, "-m", "vla_ros.cli", "node", "--transport", "dds", "--use-sim-time", "--config", cfg_path,
                                      "--status-every", "0"], stdout=self._log, stderr=subprocess.STDOUT)
        self.dds = DdsTransport()
        out = config.outputs
        self.clock = ClockPublisher(self.dds, lambda: None)
        self.odom = self.dds.publisher(config.ego.odometry_topic, "nav_msgs/msg/Odometry")
        self.cams = {c.topic: self.dds.publisher(c.topic, "sensor_msgs/msg/CompressedImage") for c in config.cameras}
        self.dds.subscribe(out.trajectory_topic, "nav_msgs/msg/Path", self._on_path)
        self.dds.subscribe(out.latency_topic, "std_msgs/msg/Float64MultiArray", self._on_latency)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + NODE_START_TIMEOUT_S
        pubs = [self.odom, *self.cams.values()]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the node process exited with {self.proc.returncode} before it was ready:\n{self._tail()}")
            if all(p.matched_count() >= 1 for p in pubs):
                return
            time.sleep(0.2)
        self.close()
        raise RuntimeError(f"the node process did not subscribe within {NODE_START_TIMEOUT_S:.0f} s:\n{self._tail()}")

    def _tail(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-3000:]

    def _on_path(self, msg: Any) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        first = msg.poses[0].header.stamp if msg.poses else msg.header.stamp
        # A fallback is stamped at the control tick that planned it, like its first pose; a policy
        # trajectory carries the t0 of its inputs, before the tick it is published at.
        fallback = stamp == first.sec * 1_000_000_000 + first.nanosec
        with self._lock:
            self._path, self._fallback = msg, fallback

    def _on_latency(self, msg: Any) -> None:
        with self._lock:
            self.latency_ms.append(float(msg.data[_LAT[0]]) + float(msg.data[_LAT[1]]))

    def set_time(self, t_ns: int) -> None:
        """Announce sim time on /clock, no faster than real time."""
        if self._wall0 is None:
            self._wall0, self._t0 = time.perf_counter(), t_ns
        ahead = (t_ns - self._t0) / 1e9 - (time.perf_counter() - self._wall0)
        if ahead > 0:
            time.sleep(ahead)
        self.clock.publish(t_ns)

    def odometry(self, msg: Any) -> None:
        self.odom.publish(msg)

    def camera(self, topic: str, msg: Any) -> None:
        self.cams[topic].publish(msg)

    def frames_done(self, t_ns: int) -> None:
        pass  # the node's own inference trigger starts on the frames

    def control(self, t_ns: int, warming_up: bool = False) -> tuple[Any, bool]:
        with self._lock:
            path, self._path = self._path, None
            fallback = self._fallback
        if path is not None:  # recorded here, on the episode's thread (the bag writer is not thread-safe)
            self._record(self.config.outputs.trajectory_topic, path, t_ns)
        return path, fallback

    def skipped(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: the node stops cleanly
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.dds.close()
        self._log.close()
        for p in (self._cfg_path, str(Path(self._cfg_path).with_suffix(".log"))):
            try:
                os.unlink(p)
            except OSError:
                pass
