"""One typed schema for the YAML in `config/`; also the source of the ROS parameters.

Every section is a frozen dataclass. `load_config(path)` / `config_from_dict(data)` build it and
validate it; any problem raises `ConfigError` whose message names the key path
(`frames.tolerance_s`, `cameras[2].topic`) and the offending value. Unknown keys are errors too,
because a misspelled key silently falling back to a default is how a car ends up with the wrong
tolerance.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


# The drive node's ROS name; `~/topic` names resolve under it.
DEFAULT_NODE_NAME = "drive_node"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid. `key` is the dotted key path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config key '{key}': {message}")
        self.key = key


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraConfig:
    """One camera. A topic ending in `/compressed` carries sensor_msgs/CompressedImage, any other
    sensor_msgs/Image."""

    name: str
    topic: str
    camera_info_topic: str | None = None
    # The camera's index in the model's camera set, for models whose prompt names each camera
    # (Alpamayo 1.5: 0 cross left, 1 front wide, 2 cross right, 3 rear left, 4 rear tele,
    # 5 rear right, 6 front tele); -1: not given. Other models ignore it.
    camera_id: int = -1

    @property
    def compressed(self) -> bool:
        return self.topic.endswith("/compressed")

    def validate(self, key: str) -> None:
        _require(bool(self.name.strip()), f"{key}.name", self.name, "must be a non-empty string")
        _require_topic(self.topic, f"{key}.topic")
        _require(self.camera_id >= -1, f"{key}.camera_id", self.camera_id, "must be >= 0 (or -1: not given)")
        if self.camera_info_topic:
            _require_topic(self.camera_info_topic, f"{key}.camera_info_topic")


@dataclass(frozen=True)
class FramesConfig:
    """Frames per camera in a stack: offsets -(count-1)*interval .. 0 s relative to t0."""

    count: int = 4
    interval_s: float = 0.1
    tolerance_s: float = 0.04
    # A stack whose t0 is older than this at tick time is skipped as stale.
    max_t0_age_s: float = 0.5
    # Messages kept per camera beyond the stack span (seconds of extra history).
    buffer_margin_s: float = 0.5

    @property
    def offsets_s(self) -> tuple[float, ...]:
        """Offsets relative to t0, oldest first, e.g. (-0.3, -0.2, -0.1, 0.0)."""
        return tuple(-(self.count - 1 - i) * self.interval_s for i in range(self.count))

    def validate(self, key: str) -> None:
        _require(self.count >= 1, f"{key}.count", self.count, "must be >= 1")
        _require(self.interval_s > 0, f"{key}.interval_s", self.interval_s, "must be > 0")
        _require(self.tolerance_s > 0, f"{key}.tolerance_s", self.tolerance_s, "must be > 0")
        _require(
            self.tolerance_s < self.interval_s / 2 or self.count == 1,
            f"{key}.tolerance_s",
            self.tolerance_s,
            f"must be < interval_s/2 ({self.interval_s / 2:g}) or one frame could fill two slots",
        )
        _require(self.max_t0_age_s > 0, f"{key}.max_t0_age_s", self.max_t0_age_s, "must be > 0")
        _require(self.buffer_margin_s >= 0, f"{key}.buffer_margin_s", self.buffer_margin_s, "must be >= 0")


@dataclass(frozen=True)
class ImageConfig:
    """Model input size per image (pixels). The model's preprocessing config may override it
    unless `override_model` is true."""

    height: int = 320
    width: int = 576
    override_model: bool = False
    # Decoded frames kept per camera (LRU); a tick reuses count-1 frames of the previous one.
    decoded_cache_per_camera: int = 16

    def validate(self, key: str) -> None:
        _require(16 <= self.height <= 4096, f"{key}.height", self.height, "must be in [16, 4096]")
        _require(16 <= self.width <= 4096, f"{key}.width", self.width, "must be in [16, 4096]")
        _require(self.decoded_cache_per_camera >= 1, f"{key}.decoded_cache_per_camera", self.decoded_cache_per_camera, "must be >= 1")


@dataclass(frozen=True)
class EgoConfig:
    odometry_topic: str = "ego/odom"
    history_steps: int = 16
    history_interval_s: float = 0.1
    # Largest gap between two odometry messages that may be interpolated across.
    max_gap_s: float = 0.25
    # How far past the newest odometry message t0 may lie (held by linear extrapolation).
    max_extrapolation_s: float = 0.1
    frame_id: str = "odom"
    child_frame_id: str = "base_link"

    def validate(self, key: str) -> None:
        _require_topic(self.odometry_topic, f"{key}.odometry_topic")
        _require(self.history_steps >= 2, f"{key}.history_steps", self.history_steps, "must be >= 2")
        _require(self.history_interval_s > 0, f"{key}.history_interval_s", self.history_interval_s, "must be > 0")
        _require(self.max_gap_s > 0, f"{key}.max_gap_s", self.max_gap_s, "must be > 0")
        _require(self.max_extrapolation_s >= 0, f"{key}.max_extrapolation_s", self.max_extrapolation_s, "must be >= 0")


@dataclass(frozen=True)
class SensingConfig:
    # A stamp older than the newest one on the same stream by more than this is a time jump
    # (bag loop, simulator reset) once most streams (or /clock) agree: all buffers are cleared.
    # A lone message that far back is dropped (stale_stamp); smaller regressions are dropped as
    # out-of-order messages.
    time_jump_s: float = 1.0
    # An input stamped further ahead of the node's clock than this is dropped (future_stamp).
    future_tolerance_s: float = 1.0
    # The largest image an input may declare (header size, checked before decoding; refused as
    # too_large): 0 = 4x `image` (or the model's input size, if larger) on that side; never above 8192.
    max_image_width: int = 0
    max_image_height: int = 0
    # Undecoded messages kept per camera (a burst evicts the oldest beyond this).
    max_buffered_per_camera: int = 64
    # Threads that decode a tick's new frames side by side (they are on the input-to-output
    # path): 0 = one per camera, at most the cores available; 1 = one after the other in the
    # assembling thread. `vla-ros eval` uses each worker's share of the cores, `train` 1 (its
    # bags are built in parallel jobs).
    decode_threads: int = 0

    def validate(self, key: str) -> None:
        _require(self.time_jump_s > 0, f"{key}.time_jump_s", self.time_jump_s, "must be > 0")
        _require(self.future_tolerance_s > 0, f"{key}.future_tolerance_s", self.future_tolerance_s, "must be > 0")
        for side in ("max_image_width", "max_image_height"):
            value = getattr(self, side)
            _require(value == 0 or 16 <= value <= 8192, f"{key}.{side}", value, "must be 0 (4x the model input) or in [16, 8192]")
        _require(self.max_buffered_per_camera >= 2, f"{key}.max_buffered_per_camera", self.max_buffered_per_camera, "must be >= 2")
        _require(self.decode_threads >= 0, f"{key}.decode_threads", self.decode_threads, "must be >= 0 (0: one per camera)")


@dataclass(frozen=True)
class ModelConfig:
    # A local checkpoint directory (config.json + safetensors) or a preset such as `random:tiny`.
    path: str = "models/drive-tiny"
    device: str = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"

    def validate(self, key: str) -> None:
        _require(bool(self.path), f"{key}.path", self.path, "must name a checkpoint directory or a preset")
        _require(
            self.device == "cpu" or self.device.startswith("cuda"),
            f"{key}.device",
            self.device,
            "must be 'cpu', 'cuda' or 'cuda:N'",
        )


@dataclass(frozen=True)
class InferenceConfig:
    rate_hz: float = 10.0
    steps: int = 10
    samples: int = 1
    reasoning: bool = False
    max_reasoning_tokens: int = 48
    backend: Literal["torch", "onnxruntime", "tensorrt"] = "torch"
    seed: int = 0
    # torch intra-op threads of the node's policy (0: all cores but one in a separate process,
    # all cores in the node's own process).
    cpu_threads: int = 0
    # Scale of the flow-matching start noise: 0 denoises from zero (deterministic: the same input
    # gives the same path, so consecutive ticks do not jump between random samples);
    # 1 samples the learned distribution. See vla_ros/runtime/start_noise.py.
    noise_scale: float = 0.0
    # Serve the policy from a child process so its work never holds the node's interpreter lock
    # or cores its callbacks and control timer need (docs/node.md). False: run it in-process.
    separate_process: bool = True
    # Niceness the policy process adds to itself (Linux; 0..19): the node's control timer and
    # message callbacks then get a core first when they wake, while the policy still has all the
    # CPU time they leave. Only with separate_process.
    policy_nice: int = 0

    def validate(self, key: str) -> None:
        _require(0 < self.rate_hz <= 1000, f"{key}.rate_hz", self.rate_hz, "must be in (0, 1000]")
        _require(self.steps >= 1, f"{key}.steps", self.steps, "must be >= 1")
        _require(self.samples >= 1, f"{key}.samples", self.samples, "must be >= 1")
        _require(self.max_reasoning_tokens >= 1, f"{key}.max_reasoning_tokens", self.max_reasoning_tokens, "must be >= 1")
        _require(self.cpu_threads >= 0, f"{key}.cpu_threads", self.cpu_threads, "must be >= 0 (0: torch's default)")
        _require(self.noise_scale >= 0, f"{key}.noise_scale", self.noise_scale, "must be >= 0")
        _require(0 <= self.policy_nice <= 19, f"{key}.policy_nice", self.policy_nice, "must be in [0, 19] (added niceness; 0: none)")


@dataclass(frozen=True)
class ControlConfig:
    # trajectory: a vehicle's path (nav_msgs/Path, Autoware); chunk: a robot arm's joint commands
    # taken from the policy's action chunks (the `arm` section).
    mode: Literal["trajectory", "chunk"] = "trajectory"
    # Output rate; 0: the mode's default (10 Hz for trajectories, 50 Hz for joint commands).
    rate_hz: float = 0.0
    # SCHED_FIFO priority (1..99) of the control timer's thread, so that it gets a core the
    # moment it wakes whatever else runs (then the interpreter lock within the switch
    # interval); 0: the normal scheduler. Needs CAP_SYS_NICE or an rtprio limit (docs/node.md);
    # where not permitted the node warns and goes on without (as ros2_control's manager does).
    realtime_priority: int = 0

    @property
    def hz(self) -> float:
        """The control rate in effect (rate_hz, or the mode's default)."""
        return self.rate_hz or (50.0 if self.mode == "chunk" else 10.0)

    def validate(self, key: str) -> None:
        _require(0 <= self.rate_hz <= 1000, f"{key}.rate_hz", self.rate_hz, "must be in (0, 1000] (0: the mode's default)")
        _require(0 <= self.realtime_priority <= 99, f"{key}.realtime_priority", self.realtime_priority,
                 "must be in [0, 99] (SCHED_FIFO priority; 0: off)")


@dataclass(frozen=True)
class SafetyConfig:
    max_input_age_s: float = 0.5
    max_output_age_s: float = 0.5
    max_abs_acceleration: float = 9.8
    max_abs_curvature: float = 0.33
    fallback_deceleration: float = 2.0

    def validate(self, key: str) -> None:
        for name in ("max_input_age_s", "max_output_age_s", "max_abs_acceleration", "max_abs_curvature", "fallback_deceleration"):
            value = getattr(self, name)
            _require(value > 0, f"{key}.{name}", value, "must be > 0")


@dataclass(frozen=True)
class OutputsConfig:
    # Relative names follow the node's namespace; /diagnostics is global by ROS convention.
    trajectory_topic: str = "vla/trajectory"
    reasoning_topic: str = "vla/reasoning"
    diagnostics_topic: str = "/diagnostics"
    latency_topic: str = "vla/latency"
    # autoware_planning_msgs/Trajectory for Autoware's controllers; empty string: not published.
    autoware_trajectory_topic: str = "vla/autoware_trajectory"
    frame_id: str = "odom"

    def validate(self, key: str) -> None:
        for name in ("trajectory_topic", "reasoning_topic", "diagnostics_topic", "latency_topic"):
            _require_topic(getattr(self, name), f"{key}.{name}")
        if self.autoware_trajectory_topic:  # empty: not published
            _require_topic(self.autoware_trajectory_topic, f"{key}.autoware_trajectory_topic")


@dataclass(frozen=True)
class NavigationConfig:
    """A navigation instruction for models conditioned on one (Alpamayo 1.5: "Turn left onto Main
    Street in 40m"), as std_msgs/String; the latest one within max_age_s is every tick's route."""

    # std_msgs/String, latched or not ("" : no navigation input; a model that takes one drives without)
    topic: str = ""
    # An instruction received longer ago than this is no longer used (turn-by-turn text goes
    # stale as the car moves); 0: it never expires. An empty string clears it at once.
    max_age_s: float = 10.0
    # Classifier-free guidance towards the instruction (Alpamayo 1.5): each flow step's velocity is
    # (1 - w) * unguided + w * guided, the unguided one from the prompt without the route (one
    # more prefill and expert pass per step; torch backend only). null: the checkpoint's setting
    # (off unless its config turns it on); 1: off (the guided velocity alone); 0: the unguided
    # one alone; above 1 follows the instruction more strongly.
    guidance_weight: float | None = None

    @property
    def policy_guidance_weight(self) -> float | None:
        """What `Policy(nav_guidance_weight=)` gets: None for the checkpoint's setting."""
        return None if self.guidance_weight is None else float(self.guidance_weight)

    def validate(self, key: str) -> None:
        if self.topic:
            _require_topic(self.topic, f"{key}.topic")
        _require(self.max_age_s >= 0, f"{key}.max_age_s", self.max_age_s, "must be >= 0 (0: never expires)")
        _require(self.guidance_weight is None or math.isfinite(self.guidance_weight), f"{key}.guidance_weight",
                 self.guidance_weight, "must be finite (or null: the checkpoint's setting)")


@dataclass(frozen=True)
class JointLimitsConfig:
    """Limits of the commanded joints, in `arm.joint_names` order (rad, rad/s, rad/s^2; m for
    prismatic joints). One value applies to every joint; an empty list means no position limit."""

    position_min: tuple[float, ...] = ()
    position_max: tuple[float, ...] = ()
    max_velocity: tuple[float, ...] = (3.0,)
    max_acceleration: tuple[float, ...] = (60.0,)

    def per_joint(self, name: str, joints: int) -> tuple[float, ...] | None:
        """The named limit for each of `joints` joints (a single value broadcast); None: unset."""
        values = getattr(self, name)
        if not values:
            return None
        return tuple(values) * joints if len(values) == 1 else tuple(values)

    def validate(self, key: str, joints: int) -> None:
        for name in ("position_min", "position_max", "max_velocity", "max_acceleration"):
            values = getattr(self, name)
            _require(len(values) in (0, 1, joints) or joints == 0, f"{key}.{name}", list(values),
                     f"must hold one value or one per joint ({joints} joints in arm.joint_names)")
        for name in ("max_velocity", "max_acceleration"):
            values = getattr(self, name)
            _require(len(values) >= 1, f"{key}.{name}", list(values), "must be set (one value or one per joint)")
            _require(all(v > 0 for v in values), f"{key}.{name}", list(values), "must be > 0")
        lo, hi = self.per_joint("position_min", joints), self.per_joint("position_max", joints)
        _require((lo is None) == (hi is None), f"{key}.position_min", list(self.position_min),
                 "position_min and position_max are set together")
        if lo is not None and hi is not None and joints:
            _require(all(a < b for a, b in zip(lo, hi)), f"{key}.position_max", list(self.position_max),
                     "must be above position_min for every joint")


@dataclass(frozen=True)
class RtcConfig:
    """Real-time chunking: the next chunk is computed while the current one runs, its first
    actions guided towards what will have been executed by the time it arrives (docs/arm.md)."""

    enabled: bool = True
    # Upper bound of the guidance weight (LeRobot's default: 10).
    max_guidance_weight: float = 10.0
    # How the guidance fades over the leftover beyond the inference delay: zeros (delay only),
    # ones (the whole execution horizon), linear or exp decay. exp over 20 actions, not LeRobot's
    # linear over 10: measured smoother at the switch and after it (bench/chunks.py, docs/arm.md).
    schedule: Literal["zeros", "ones", "linear", "exp"] = "exp"
    # Leftover actions (of the previous chunk) that guide the next one.
    execution_horizon: int = 20
    # Without RTC, consecutive chunks are blended over this many actions after the join
    # (linear cross-fade from the old chunk to the new one; 0: switch at once).
    blend_steps: int = 5

    def validate(self, key: str) -> None:
        _require(self.max_guidance_weight > 0, f"{key}.max_guidance_weight", self.max_guidance_weight, "must be > 0")
        _require(self.execution_horizon >= 1, f"{key}.execution_horizon", self.execution_horizon, "must be >= 1")
        _require(self.blend_steps >= 0, f"{key}.blend_steps", self.blend_steps, "must be >= 0")


@dataclass(frozen=True)
class ArmConfig:
    """A robot arm (control.mode: chunk): joint states and an instruction in, joint commands out
    for ros2_control's joint_trajectory_controller and/or forward_command_controller."""

    joint_state_topic: str = "joint_states"
    # The model's state and action vector, in order: joint names as in sensor_msgs/JointState.
    joint_names: tuple[str, ...] = ()
    # std_msgs/String, latched (transient local); the latest one is the task of every tick.
    instruction_topic: str = "vla/instruction"
    # The task until the first instruction arrives ("" : no tick runs before one arrives).
    instruction: str = ""
    # Seconds between consecutive actions of a chunk (LeRobot checkpoints do not record it).
    action_dt_s: float = 0.02
    # trajectory_msgs/JointTrajectory for joint_trajectory_controller ("" : not published).
    joint_trajectory_topic: str = "joint_trajectory_controller/joint_trajectory"
    # std_msgs/Float64MultiArray positions for a forward_command_controller ("" : not published).
    forward_command_topic: str = ""
    # Joint order of the commands (default: joint_names); each must be one of joint_names.
    command_joint_names: tuple[str, ...] = ()
    # A joint state older than this at a tick (or missing a joint) holds position.
    max_state_age_s: float = 0.1
    # Start the next inference when the current chunk has less than (latency p95 + this) left.
    start_margin_s: float = 0.05
    limits: JointLimitsConfig = field(default_factory=JointLimitsConfig)
    rtc: RtcConfig = field(default_factory=RtcConfig)

    @property
    def command_joints(self) -> tuple[str, ...]:
        return self.command_joint_names or self.joint_names

    def validate(self, key: str) -> None:
        _require_topic(self.joint_state_topic, f"{key}.joint_state_topic")
        _require_topic(self.instruction_topic, f"{key}.instruction_topic")
        for name in ("joint_trajectory_topic", "forward_command_topic"):
            if getattr(self, name):
                _require_topic(getattr(self, name), f"{key}.{name}")
        _require(len(set(self.joint_names)) == len(self.joint_names), f"{key}.joint_names", list(self.joint_names),
                 "holds a name twice")
        _require(all(n.strip() for n in self.joint_names), f"{key}.joint_names", list(self.joint_names), "holds an empty name")
        unknown = [n for n in self.command_joint_names if n not in self.joint_names]
        _require(not unknown, f"{key}.command_joint_names", list(self.command_joint_names),
                 f"names {unknown} that are not in arm.joint_names")
        _require(len(set(self.command_joint_names)) == len(self.command_joint_names), f"{key}.command_joint_names",
                 list(self.command_joint_names), "holds a name twice")
        _require(0 < self.action_dt_s <= 1.0, f"{key}.action_dt_s", self.action_dt_s, "must be in (0, 1] s")
        _require(self.max_state_age_s > 0, f"{key}.max_state_age_s", self.max_state_age_s, "must be > 0")
        _require(self.start_margin_s >= 0, f"{key}.start_margin_s", self.start_margin_s, "must be >= 0")
        self.limits.validate(f"{key}.limits", len(self.joint_names))
        self.rtc.validate(f"{key}.rtc")


def _default_cameras() -> tuple[CameraConfig, ...]:
    # Alpamayo's four default cameras, with the indices its 1.5 prompt names them by
    cameras = (("cross_left", 0), ("front_wide", 1), ("cross_right", 2), ("front_tele", 6))
    return tuple(CameraConfig(name=n, topic=f"cameras/{n}/image_raw/compressed", camera_id=i) for n, i in cameras)


@dataclass(frozen=True)
class Config:
    """The whole configuration of a vla_ros deployment or evaluation."""

    cameras: tuple[CameraConfig, ...] = field(default_factory=_default_cameras)
    frames: FramesConfig = field(default_factory=FramesConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    ego: EgoConfig = field(default_factory=EgoConfig)
    sensing: SensingConfig = field(default_factory=SensingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    navigation: NavigationConfig = field(default_factory=NavigationConfig)
    arm: ArmConfig = field(default_factory=ArmConfig)

    @property
    def chunk_mode(self) -> bool:
        """A robot arm fed joint states (the `arm` section) instead of a vehicle fed odometry."""
        return self.control.mode == "chunk"

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    def validate(self, key: str = "") -> None:
        _require(len(self.cameras) >= 1, "cameras", list(self.cameras), "must list at least one camera")
        seen_names: set[str] = set()
        seen_topics: set[str] = set()
        for i, cam in enumerate(self.cameras):
            cam.validate(f"cameras[{i}]")
            _require(cam.name not in seen_names, f"cameras[{i}].name", cam.name, "duplicate camera name")
            _require(cam.topic not in seen_topics, f"cameras[{i}].topic", cam.topic, "duplicate topic")
            seen_names.add(cam.name)
            seen_topics.add(cam.topic)
        _require(
            self.ego.odometry_topic not in seen_topics,
            "ego.odometry_topic",
            self.ego.odometry_topic,
            "is also a camera topic",
        )
        for f in dataclasses.fields(self):
            if f.name != "cameras":
                getattr(self, f.name).validate(f.name)
        if self.chunk_mode:
            arm = self.arm
            _require(len(arm.joint_names) >= 1, "arm.joint_names", list(arm.joint_names),
                     "must list the model's joints in order (control.mode is chunk)")
            _require(bool(arm.joint_trajectory_topic or arm.forward_command_topic), "arm.joint_trajectory_topic",
                     arm.joint_trajectory_topic, "or arm.forward_command_topic must be set (nothing would be commanded)")
            inputs = {c.topic for c in self.cameras}
            for name in ("joint_state_topic", "instruction_topic"):
                _require(getattr(arm, name) not in inputs, f"arm.{name}", getattr(arm, name), "is also a camera topic")
            _require(not self.navigation.topic, "navigation.topic", self.navigation.topic,
                     "is for vehicles (control.mode trajectory); an arm's instruction comes on arm.instruction_topic")
        elif self.navigation.topic:
            _require(self.navigation.topic not in seen_topics | {self.ego.odometry_topic}, "navigation.topic",
                     self.navigation.topic, "is also a camera or odometry topic")

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def resolve_topics(self, namespace: str = "/", node_name: str = DEFAULT_NODE_NAME) -> "Config":
        """A copy whose topic names are all absolute, resolved as ROS 2 resolves them for a node
        `node_name` in `namespace` (relative names under the namespace, `~/x` under the node)."""

        def res(name: str | None) -> str | None:
            return resolve_topic(name, namespace, node_name) if name else name

        cams = tuple(dataclasses.replace(c, topic=res(c.topic), camera_info_topic=res(c.camera_info_topic)) for c in self.cameras)
        out = self.outputs
        outputs = dataclasses.replace(out, **{n: res(getattr(out, n)) for n in (
            "trajectory_topic", "reasoning_topic", "diagnostics_topic", "latency_topic", "autoware_trajectory_topic")})
        arm = dataclasses.replace(self.arm, **{n: res(getattr(self.arm, n)) for n in (
            "joint_state_topic", "instruction_topic", "joint_trajectory_topic", "forward_command_topic")})
        resolved = dataclasses.replace(self, cameras=cams, ego=dataclasses.replace(self.ego, odometry_topic=res(self.ego.odometry_topic)),
                                       outputs=outputs, arm=arm,
                                       navigation=dataclasses.replace(self.navigation, topic=res(self.navigation.topic)))
        resolved.validate()  # two names may now be the same topic
        return resolved

    def replace(self, **sections: Any) -> "Config":
        """A copy with whole sections or `section__key` values replaced, re-validated."""
        data = self.to_dict()
        for name, value in sections.items():
            if "__" in name:
                section, key = name.split("__", 1)
                data.setdefault(section, {})[key] = value
            else:
                data[name] = _to_plain(value)
        return config_from_dict(data)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_config(path: str | Path | None, namespace: str = "/", node_name: str = DEFAULT_NODE_NAME) -> Config:
    """Load and validate a YAML config file; `None` gives the defaults (config/drive.yaml).
    Topic names come back resolved for node `node_name` in `namespace` (the root by default)."""
    if path is None:
        return config_from_dict({}, namespace, node_name)
    p = Path(path)
    if not p.is_file():
        raise ConfigError("<file>", f"config file '{p}' does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError("<file>", f"'{p}' is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    # A ROS 2 parameter file (`node_name: {ros__parameters: {...}}`) is accepted as well.
    if isinstance(data, dict) and len(data) == 1:
        (only,) = data.values()
        if isinstance(only, dict) and "ros__parameters" in only:
            data = only["ros__parameters"]
    return config_from_dict(data, namespace, node_name)


def config_from_dict(data: Any, namespace: str = "/", node_name: str = DEFAULT_NODE_NAME) -> Config:
    """Build and validate; topic names resolved for a node in `namespace` (see load_config)."""
    if not isinstance(data, dict):
        raise ConfigError("<root>", f"must be a mapping, got {type(data).__name__}")
    cfg = _build(Config, data, "")
    cfg.validate()
    return cfg.resolve_topics(namespace, node_name)


def _build(cls: type, data: Any, key: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(key or "<root>", f"must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{key}.{unknown[0]}" if key else str(unknown[0])
        raise ConfigError(where, f"unknown key (known keys here: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        sub = f"{key}.{name}" if key else name
        kwargs[name] = _coerce(hints[name], value, sub)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(key or "<root>", str(exc)) from exc


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(key, f"got {value!r}, expected one of {', '.join(repr(a) for a in args)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"must be a list, got {value!r}")
        return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(key, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported schema type {tp!r} at {key}")  # a bug in the schema, not input


# --------------------------------------------------------------------------------------------
# ROS 2 topic names (the rules of rcl's topic name validation, without substitutions)
# --------------------------------------------------------------------------------------------

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_/~")


def topic_name_problem(name: str) -> str | None:
    """Why `name` is not a valid ROS 2 topic name (absolute, relative or `~/private`), or None."""
    if not name:
        return "must not be empty"
    bad = sorted(set(name) - _NAME_CHARS)
    if bad:
        return f"contains {''.join(bad)!r} (only letters, digits, '_', '/' and a leading '~')"
    if "~" in name[1:] or (name.startswith("~") and name not in ("~",) and not name.startswith("~/")):
        return "'~' may only start the name, as '~/...'"
    if name.endswith("/") and name != "/":
        return "must not end with '/'"
    if name == "/":
        return "must name a topic, not the root namespace"
    if "//" in name:
        return "must not contain '//'"
    for token in name.lstrip("~/").split("/"):
        if token and token[0].isdigit():
            return f"token '{token}' must not start with a digit"
    return None


def resolve_topic(name: str, namespace: str = "/", node_name: str = DEFAULT_NODE_NAME) -> str:
    """The absolute name ROS 2 gives `name` for node `node_name` in `namespace`."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if name.startswith("/"):
        return name
    if name == "~":
        return f"{ns}/{node_name}"
    if name.startswith("~/"):
        return f"{ns}/{node_name}/{name[2:]}"
    return f"{ns}/{name}"


def _require_topic(name: str, key: str) -> None:
    problem = topic_name_problem(name)
    if problem:
        raise ConfigError(key, f"got {name!r}, not a ROS 2 topic name: {problem}")


def _require(ok: bool, key: str, value: Any, message: str) -> None:
    if not ok:
        raise ConfigError(key, f"got {value!r}, {message}")


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj
