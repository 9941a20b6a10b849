"""Recording a simulated drive to a rosbag2 (MCAP or sqlite3).

Topics (camera topics and the odometry topic come from the config):
  <camera topic>                    sensor_msgs/CompressedImage (JPEG), frame `<name>_optical`, camera_hz
  <camera info topic>               sensor_msgs/CameraInfo, same stamps as the images
  <ego.odometry_topic>              nav_msgs/Odometry, 50 Hz, frame `odom`, child `base_link`
  /tf_static                        tf2_msgs/TFMessage, once: base_link -> every `<name>_optical`
  /tf                               tf2_msgs/TFMessage, with each odometry message: odom -> base_link
  /sim/ground_truth                 std_msgs/String (JSON, see labels.py), 10 Hz

Header stamps equal log times: sim time from a fixed epoch (`start_s`), so the same seed and
arguments give byte-identical message payloads.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_ros.config import CameraConfig, Config
from vla_ros.ros import messages
from vla_ros.ros.messages import TF_STATIC_TOPIC, TF_TOPIC
from vla_ros.replay.bag_io import BagFormat, BagWriter
from vla_ros.sim.camera import RIG, CameraSpec, intrinsics, matrix_to_quat, rotation
from vla_ros.sim.labels import LABEL_HORIZON_S, ground_truth_json
from vla_ros.sim.render import STRIDE, CameraRenderer
from vla_ros.sim.scenarios import MIX, SCENARIOS, plan_world
from vla_ros.sim.scene import build_scene
from vla_ros.sim.world import STEP_NS, Timeline, simulate
from vla_ros.sensors.geometry import yaw_to_quat

ODOM_HZ = 50.0
GROUND_TRUTH_HZ = 10.0
GROUND_TRUTH_TOPIC = "/sim/ground_truth"
SIZE_MULTIPLE = 8  # JPEG blocks, reduced-scale decoding (1/2, 1/4, 1/8) and the renderer's stride
MAX_SPEED = 34.0  # m/s, upper bound of any speed the planner allows (for road length)


@dataclass(frozen=True)
class RecordSpec:
    seed: int = 0
    duration_s: float = 20.0
    scenario: str = MIX
    width: int = 576
    height: int = 320
    camera_hz: float = 10.0
    jpeg_quality: int = 90
    start_s: float = 1000.0
    workers: int = 1

    @property
    def start_ns(self) -> int:
        return round(self.start_s * 1e9)


class SpecError(ValueError):
    """An invalid recording request; raised before anything is written."""


def validate(spec: RecordSpec, config: Config) -> None:
    if not (isinstance(spec.duration_s, (int, float)) and math.isfinite(spec.duration_s) and spec.duration_s > 0):
        raise SpecError(f"--duration must be a positive number of seconds, got {spec.duration_s}")
    if spec.duration_s > 24 * 3600:
        raise SpecError(f"--duration {spec.duration_s} s is longer than a day; record in pieces")
    if spec.scenario != MIX and spec.scenario not in SCENARIOS:
        raise SpecError(f"unknown scenario '{spec.scenario}' (known: {', '.join([*SCENARIOS, MIX])})")
    for name, value in (("--width", spec.width), ("--height", spec.height)):
        if not 64 <= value <= 4096:
            raise SpecError(f"{name} must be in [64, 4096], got {value}")
        if value % SIZE_MULTIPLE:
            raise SpecError(f"{name} must be a multiple of {SIZE_MULTIPLE} (JPEG blocks, reduced-scale decoding), got {value}")
    if not (math.isfinite(spec.camera_hz) and 0 < spec.camera_hz <= 100):
        raise SpecError(f"--camera-hz must be in (0, 100], got {spec.camera_hz}")
    if not 1 <= spec.jpeg_quality <= 100:
        raise SpecError(f"--jpeg-quality must be in [1, 100], got {spec.jpeg_quality}")
    if spec.workers < 1:
        raise SpecError(f"--workers must be >= 1, got {spec.workers}")
    if spec.seed < 0:
        raise SpecError(f"--seed must be >= 0, got {spec.seed}")
    unknown = [c.name for c in config.cameras if c.name not in RIG]
    if unknown:
        raise SpecError(f"the simulator renders the cameras {', '.join(RIG)}; the config names {', '.join(unknown)}")
    if not config.cameras or not all(c.compressed for c in config.cameras):
        raise SpecError("the simulator writes JPEG sensor_msgs/CompressedImage: camera topics must end in '/compressed'")
    assert spec.width % STRIDE == 0


def camera_info_topic(cam: CameraConfig) -> str:
    """The configured CameraInfo topic, else the image_transport convention:
    /cameras/x/image_raw/compressed -> /cameras/x/camera_info."""
    if cam.camera_info_topic:
        return cam.camera_info_topic
    base = cam.topic[: -len("/compressed")] if cam.topic.endswith("/compressed") else cam.topic
    return base.rsplit("/", 1)[0] + "/camera_info"


def world_for(spec: RecordSpec) -> Timeline:
    """Plan and simulate the world a recording shows (plus the label horizon)."""
    span = spec.duration_s + LABEL_HORIZON_S + 0.5
    plan = plan_world(spec.seed, spec.scenario, span * MAX_SPEED + 800.0)
    return simulate(plan, span, spec.seed, spec.start_ns)


def tf_static(stamp_ns: int, specs: list[CameraSpec], base_frame: str) -> Any:
    tfs = [messages.transform_stamped(stamp_ns, base_frame, s.optical_frame, s.xyz, matrix_to_quat(rotation(s))) for s in specs]
    return messages.tf_message(tfs)


def camera_times(spec: RecordSpec) -> list[int]:
    n = int(math.floor(spec.duration_s * spec.camera_hz + 1e-9)) + 1
    return [spec.start_ns + round(j * 1e9 / spec.camera_hz) for j in range(n)]


def _step_times(spec: RecordSpec, hz: float) -> list[int]:
    every = round(1e9 / hz / STEP_NS)
    n = int(math.floor(spec.duration_s * hz + 1e-9)) + 1
    return [j * every for j in range(n)]  # step indices


def record(
    path: str | Path,
    config: Config,
    spec: RecordSpec = RecordSpec(),
    fmt: BagFormat = "mcap",
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, int]:
    """Write the recording; returns messages per topic. Raises SpecError / FileExistsError
    before creating anything."""
    config = config.resolve_topics()  # bags hold absolute topic names
    validate(spec, config)
    out = Path(path)
    if out.exists() and not overwrite:
        raise FileExistsError(f"output bag '{out}' exists (use --force to overwrite)")
    if not out.parent.exists():
        raise FileNotFoundError(f"directory '{out.parent}' does not exist")
    timeline = world_for(spec)
    cams = list(config.cameras)
    specs = [RIG[c.name] for c in cams]
    renderers = [CameraRenderer(s, spec.width, spec.height) for s in specs]
    intr = [intrinsics(s, spec.width, spec.height) for s in specs]
    info_topics = [camera_info_topic(c) for c in cams]
    frame_ids = [s.optical_frame for s in specs]
    counts: dict[str, int] = {}
    ego_cfg = config.ego

    def write(bag: BagWriter, topic: str, msg: Any, t: int) -> None:
        bag.write(topic, msg, t)
        counts[topic] = counts.get(topic, 0) + 1

    def frame(t: int) -> list[bytes]:
        scene = build_scene(timeline, t)
        return [messages.encode_jpeg(r.render(scene), spec.jpeg_quality) for r in renderers]

    # Every message, in log-time order; at equal times: tf, odometry, ground truth, cameras.
    events: list[tuple[int, int, int]] = [(spec.start_ns, 0, 0)]
    events += [(timeline.step_time_ns(k), 1, k) for k in _step_times(spec, ODOM_HZ)]
    events += [(timeline.step_time_ns(k), 2, k) for k in _step_times(spec, GROUND_TRUTH_HZ)]
    frames = camera_times(spec)
    events += [(t, 3, j) for j, t in enumerate(frames)]
    events.sort()

    pool = ThreadPoolExecutor(spec.workers) if spec.workers > 1 else None
    pending: dict[int, Any] = {}

    def images(j: int) -> list[bytes]:
        if pool is None:
            return frame(frames[j])
        for ahead in range(j, min(j + 2 * spec.workers, len(frames))):  # keep the pool busy
            if ahead not in pending:
                pending[ahead] = pool.submit(frame, frames[ahead])
        return pending.pop(j).result()

    from tqdm import tqdm

    try:
        with BagWriter(out, fmt, overwrite=overwrite) as bag, tqdm(
            total=len(frames), desc=f"sim {spec.scenario} seed {spec.seed}", unit="frame", disable=not progress
        ) as bar:
            for t, kind, idx in events:
                if kind == 0:
                    write(bag, TF_STATIC_TOPIC, tf_static(t, specs, ego_cfg.child_frame_id), t)
                elif kind == 1:
                    x, y, yaw, v, _, yaw_rate = (float(c) for c in timeline.ego[idx, :6])
                    msg = messages.odometry(t, (x, y, 0.0), yaw_to_quat(yaw), (v, 0.0, 0.0), (0.0, 0.0, yaw_rate), ego_cfg.frame_id, ego_cfg.child_frame_id)
                    write(bag, ego_cfg.odometry_topic, msg, t)
                    write(bag, TF_TOPIC, messages.odometry_tf(msg), t)
                elif kind == 2:
                    write(bag, GROUND_TRUTH_TOPIC, messages.string(ground_truth_json(timeline, idx)), t)
                else:
                    for c, data, k, topic, fid in zip(cams, images(idx), intr, info_topics, frame_ids):
                        write(bag, c.topic, messages.compressed_image(t, fid, data, "jpeg"), t)
                        write(bag, topic, messages.camera_info(t, fid, k.width, k.height, k.fx, k.fy, k.cx, k.cy), t)
                    bar.update(1)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return counts


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
