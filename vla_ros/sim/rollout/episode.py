"""One rollout episode in lockstep: the world advances in sim time, one 20 ms step at a time.

At every step the ego's odometry (50 Hz) goes to the node core, as the odometry topic would
deliver it; every fifth step (10 Hz) the four cameras are rendered, JPEG-encoded and delivered
as CompressedImage messages, and the core runs an inference tick on them (sim time waits for
the policy: lockstep). One step (20 ms) later the core's control tick publishes the latest
trajectory re-timed to now (or its safe fallback) as a nav_msgs/Path, exactly as the node does;
the vehicle controller (follower.py) tracks the newest published path until the next one.

For the first `warmup_s` the world's expert drives (the node receives everything but is not
followed yet: it needs 1.5 s of ego history before it can run), then the method takes over.
Methods: "model" (the node core with the policy), "constant_velocity" (a path straight ahead at
the current speed, re-planned at 10 Hz and tracked by the same controller: the lower bound) and
"expert" (the world's own driver throughout: the upper bound and the reference drive).

An episode ends after `duration_s` past the handover, at the first collision, or when the ego
has left the asphalt entirely.
"""
from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_ros.config import Config
from vla_ros.ros import messages
from vla_ros.sensors.geometry import yaw_to_quat
from vla_ros.sim.camera import RIG, intrinsics, matrix_to_quat, rotation
from vla_ros.sim.ego import EGO_WIDTH
from vla_ros.sim.record import MAX_SPEED, TF_STATIC_TOPIC, TF_TOPIC, camera_info_topic
from vla_ros.sim.render import CameraRenderer
from vla_ros.sim.road import EDGE_D, SHOULDER
from vla_ros.sim.rollout.follower import PathFollower, TimedPath
from vla_ros.sim.rollout.footprint import ego_rect, overlaps
from vla_ros.sim.rollout.log import EpisodeLog
from vla_ros.sim.rollout.markers import TRAFFIC_TOPIC, traffic_markers
from vla_ros.sim.rollout.scoring import NEAR_M, vehicle_rect
from vla_ros.sim.scenarios import WorldPlan, plan_world
from vla_ros.sim.scene import scene_at
from vla_ros.sim.world import EGO_FIELDS, STEP_NS, WorldStepper

START_NS = 1_000_000_000_000  # sim time of step 0 (1000 s, as `vla-ros sim record`)
WARMUP_S = 2.0
CAMERA_EVERY = 5  # steps between camera frames: 10 Hz
CONTROL_DELAY_STEPS = 1  # the control tick runs one step (20 ms) after the frames
CV_HORIZON_S = 6.4
CV_DT_S = 0.1
LEFT_ROAD_D = EDGE_D + SHOULDER + EGO_WIDTH / 2  # the whole car is beyond the asphalt
EXPERT_PATH_TOPIC = "/rollout/expert_path"
Progress = Callable[[int], None]


@dataclass(frozen=True)
class EpisodeSpec:
    index: int
    seed: int
    scenario: str
    duration_s: float
    warmup_s: float = WARMUP_S
    width: int = 576  # camera images as `vla-ros sim record` writes them by default (the training data)
    height: int = 320
    jpeg_quality: int = 90

    @property
    def name(self) -> str:
        return f"ep{self.index:02d}_seed{self.seed}"

    @property
    def handover_step(self) -> int:
        return int(round(self.warmup_s * 1e9 / STEP_NS))

    @property
    def steps(self) -> int:
        return self.handover_step + int(round(self.duration_s * 1e9 / STEP_NS)) + 1


def world_plan(spec: EpisodeSpec) -> WorldPlan:
    return plan_world(spec.seed, spec.scenario, (spec.warmup_s + spec.duration_s) * MAX_SPEED + 800.0)


def _ego_dict(world: WorldStepper) -> dict[str, float]:
    return dict(zip(EGO_FIELDS, world.ego_row()))


def _crashed(world: WorldStepper, vehicles: Any) -> bool:
    e = world.ego
    rect = ego_rect(e.x, e.y, e.yaw)
    return any(math.hypot(v.x - rect.cx, v.y - rect.cy) < NEAR_M and overlaps(rect, vehicle_rect(v)) for v in vehicles)


def constant_velocity_path(world: WorldStepper, now_ns: int) -> TimedPath:
    """Straight ahead from the current pose at the current speed (the lower-bound planner)."""
    e = world.ego
    t = np.arange(int(round(CV_HORIZON_S / CV_DT_S)) + 1) * CV_DT_S
    xy = np.stack([e.x + e.v * t * math.cos(e.yaw), e.y + e.v * t * math.sin(e.yaw)], axis=1)
    return TimedPath(now_ns + np.round(t * 1e9).astype(np.int64), xy, np.full(len(t), e.yaw))


class _Outputs:
    """What an episode writes besides its log: rollout.mcap (written beside, then moved into
    place) and the animation."""

    def __init__(self, out_dir: Path | None, animation: Any) -> None:
        from vla_ros.replay.bag_io import BagWriter

        self.dir = out_dir
        self.bag = None
        self.animation = animation
        if out_dir is None:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        self._tmp = out_dir / ".rollout.writing"
        if self._tmp.exists():
            shutil.rmtree(self._tmp)
        self._tmp.mkdir()
        # rosbags names the storage file after its directory: write <tmp>/rollout/rollout.mcap
        self.bag = BagWriter(self._tmp / "rollout", "mcap")
        self.bag.__enter__()

    def write(self, topic: str, msg: Any, t_ns: int) -> None:
        if self.bag is not None:
            self.bag.write(topic, msg, t_ns)

    def close(self, ok: bool) -> dict[str, str]:
        files: dict[str, str] = {}
        if self.bag is not None:
            self.bag.__exit__(None, None, None)
            if ok:
                (written,) = list((self._tmp / "rollout").glob("*.mcap"))
                target = self.dir / "rollout.mcap"
                if target.exists():
                    target.unlink()
                shutil.move(str(written), str(target))
                files["mcap"] = "rollout.mcap"
            shutil.rmtree(self._tmp, ignore_errors=True)
        if self.animation is not None:
            name = self.animation.close()
            if name:
                files["animation"] = name
        return files


def run_episode(
    spec: EpisodeSpec,
    method: str,
    config: Config,
    policy: Any = None,
    model_name: str = "",
    out_dir: Path | None = None,
    reference: EpisodeLog | None = None,
    progress: Progress | None = None,
    decode_threads: int = 1,
    transport: str = "lockstep",
) -> EpisodeLog:
    """Run one episode with `method`. With `out_dir` (model episodes) it also writes
    rollout.mcap and the animation there; `reference` (the expert's drive) is drawn in it.
    `transport`: "lockstep" (the node core here, `policy` given) or "dds" (the node process;
    `model_name` is the model it loads)."""

    wall0 = time.perf_counter()
    config = config.resolve_topics().replace(sensing__decode_threads=decode_threads)
    if getattr(config.sensing, "max_image_width", None) == 0:  # an automatic input-size bound (sensors): admit the frames rendered here
        config = config.replace(sensing__max_image_width=spec.width, sensing__max_image_height=spec.height)
    plan = world_plan(spec)
    world = WorldStepper(plan, spec.seed)
    follower = PathFollower()
    cams = list(config.cameras)
    rig = [RIG[c.name] for c in cams]
    front = next((i for i, c in enumerate(cams) if c.name == "front_wide"), 0)
    out_cfg = config.outputs
    animation = None
    if out_dir is not None:
        from vla_ros.sim.rollout.animation import AnimationWriter

        animation = AnimationWriter(out_dir, spec, plan.road, rig[front], reference)
    outputs = _Outputs(out_dir, animation)
    node: Any = None
    renderers: list[CameraRenderer] = []
    if method == "model":
        from vla_ros.sim.rollout.nodes import DdsNode, LockstepNode

        try:
            if transport == "dds":
                node = DdsNode(config, model_name, outputs.write, out_dir or Path(tempfile.gettempdir()))
            elif policy is None:
                raise ValueError("the model method needs a policy")
            else:
                node = LockstepNode(config, policy, model_name, outputs.write)
        except BaseException:
            outputs.close(False)
            raise
        renderers = [CameraRenderer(s, spec.width, spec.height) for s in rig]
    elif method not in ("expert", "constant_velocity"):
        raise ValueError(f"unknown method '{method}'")
    if out_dir is not None:
        tfs = [messages.transform_stamped(START_NS, config.ego.child_frame_id, s.optical_frame, s.xyz, matrix_to_quat(rotation(s))) for s in rig]
        outputs.write(TF_STATIC_TOPIC, messages.tf_message(tfs), START_NS)
        if reference is not None:
            outputs.write(EXPERT_PATH_TOPIC, _reference_path(reference, out_cfg.frame_id), START_NS)
    k_cam = intrinsics(rig[front], spec.width, spec.height)

    n = spec.steps
    h = spec.handover_step
    rows = np.empty((n, len(EGO_FIELDS)))
    traffic = []
    control_ns: list[int] = []
    fallback: list[bool] = []
    terminated = None
    front_rgb = None
    ok = False
    try:
        for k in range(n):
            t = START_NS + k * STEP_NS
            if node is not None:
                node.set_time(t)
            rows[k] = world.ego_row()
            snaps = world.snapshot()
            traffic.append(snaps)
            ego = world.ego
            if node is not None or out_dir is not None:
                odom = messages.odometry(t, (ego.x, ego.y, 0.0), yaw_to_quat(ego.yaw), (ego.v, 0.0, 0.0), (0.0, 0.0, ego.yaw_rate),
                                         config.ego.frame_id, config.ego.child_frame_id)
                if node is not None:
                    node.odometry(odom)
                outputs.write(config.ego.odometry_topic, odom, t)
                outputs.write(TF_TOPIC, messages.odometry_tf(odom), t)
            if node is not None and k % CAMERA_EVERY == 0:
                scene = scene_at(plan.road, t, _ego_dict(world), snaps)
                for i, (cam, r, s) in enumerate(zip(cams, renderers, rig)):
                    rgb = r.render(scene)
                    msg = messages.compressed_image(t, s.optical_frame, messages.encode_jpeg(rgb, spec.jpeg_quality), "jpeg")
                    node.camera(cam.topic, msg)
                    if i == front:
                        front_rgb = rgb
                        outputs.write(cam.topic, msg, t)
                        outputs.write(camera_info_topic(cam), messages.camera_info(t, s.optical_frame, k_cam.width, k_cam.height, k_cam.fx,
                                                                                   k_cam.fy, k_cam.cx, k_cam.cy), t)
                if out_dir is not None:
                    outputs.write(TRAFFIC_TOPIC, traffic_markers(t, out_cfg.frame_id, snaps), t)
                node.frames_done(t)
            if k % CAMERA_EVERY == CONTROL_DELAY_STEPS:
                if node is not None:
                    path, in_fallback = node.control(t, warming_up=k < h)
                    if path is not None and len(path.poses):
                        follower.set_path(TimedPath.from_path_message(path))
                    if k >= h:
                        control_ns.append(t)
                        fallback.append(in_fallback)
                elif method == "constant_velocity":
                    follower.set_path(constant_velocity_path(world, t))
                    if k >= h:
                        control_ns.append(t)
                        fallback.append(False)
            if animation is not None and k % CAMERA_EVERY == CONTROL_DELAY_STEPS:
                animation.add(t, k, _ego_dict(world), snaps, front_rgb, follower.path, k >= h,
                              bool(fallback[-1]) if fallback else False)
            if progress is not None and k % 50 == 49:
                progress(50)
            if k >= h and _crashed(world, snaps):
                terminated = "collision"
                break
            if k >= h and abs(ego.d) > LEFT_ROAD_D:
                terminated = "left_road"
                break
            if k == n - 1:
                break
            if k < h or method == "expert":
                world.step()
            else:
                world.step(lambda e, _t, _lead, now=t: follower.command(e, now))
        ok = True
    finally:
        if node is not None:
            node.close()
        files = outputs.close(ok)
    steps = len(traffic)
    if progress is not None:
        progress(steps % 50 + (n - steps))  # the rest of the episode's steps, for the bar
    skipped = node.skipped() if node is not None else {}
    latency = node.latency_ms if node is not None else []
    rel = {} if out_dir is None else {k: f"{out_dir.name}/{v}" for k, v in files.items()}
    return EpisodeLog(spec.name, method, spec.seed, spec.scenario, plan.road, START_NS, h, rows[:steps], traffic,
                      np.asarray(control_ns, np.int64), np.asarray(fallback, bool), latency, terminated,
                      time.perf_counter() - wall0, skipped, rel)


def _reference_path(ref: EpisodeLog, frame_id: str) -> Any:
    """The expert's whole drive as one nav_msgs/Path (every 10th step: 5 Hz)."""
    idx = np.arange(0, ref.steps, 10)
    x, y, yaw = ref.field("x")[idx], ref.field("y")[idx], ref.field("yaw")[idx]
    q = yaw_to_quat(yaw)
    poses = [messages.pose_stamped(int(ref.start_ns + i * STEP_NS), frame_id, (float(a), float(b), 0.0), qq)
             for i, a, b, qq in zip(idx, x, y, q)]
    return messages.path(int(ref.start_ns), frame_id, poses)
