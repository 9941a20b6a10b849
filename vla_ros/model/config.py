"""The model's config.json: one typed description of a VLA checkpoint.

`VLAConfig` holds the architecture name, the transformers Qwen3-VL config (as a plain dict, so a
published `config.json` can be pasted in), expert overrides, the action-space, flow-matching,
action-projection, history-tokenizer, image-preprocessing and prompt settings. Everything is
validated at construction; errors name the key (`flow.direction`).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla_ros.model.families import family_names, is_known

FLOW_DIRECTIONS = ("noise_to_data", "data_to_noise")
FLOW_GRIDS = ("uniform", "cosine")
SPEED_ESTIMATES = ("window_quadratic", "trapezoid_smooth")
ACTION_PROJ_TYPES = ("fourier_silu", "alpamayo_v2")
HISTORY_SCHEMES = ("next_delta_floor", "prev_delta_round")
REASONING_STOPS = ("reasoning_end", "future_start")
MAX_CAMERAS = 16  # a variable-camera model takes 1..MAX_CAMERAS cameras per tick


class ModelConfigError(ValueError):
    """config.json is missing a key or has an invalid value. `key` is the dotted path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"model config '{key}': {message}")
        self.key = key


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ModelConfigError(key, message)


@dataclass(frozen=True)
class ActionSpaceConfig:
    """Unicycle acceleration/curvature action space (Alpamayo-R1)."""

    type: str = "unicycle_accel_curvature"
    num_waypoints: int = 64
    dt: float = 0.1
    accel_bound: float = 9.8
    curvature_bound: float = 0.33
    # Velocity at t0: ridge-regularized quadratic fit over the last `velocity_window` history poses.
    velocity_window: int = 6
    velocity_ridge: float = 1e-3
    # False (Alpamayo-R1): physical actions are never changed; out-of-bound samples are reported.
    clip: bool = True
    # Speed at t0: "window_quadratic" (the fit above) or "trapezoid_smooth" (Alpamayo-R1's
    # estimate_t0_states: the whole history, trapezoid least squares, 3rd-order smoothing).
    speed_estimate: str = "window_quadratic"
    v_lambda: float = 1e-6
    v_ridge: float = 1e-4

    @property
    def action_dim(self) -> int:
        return 2

    def validate(self) -> None:
        _check(self.type == "unicycle_accel_curvature", "action_space.type", f"unknown action space {self.type!r}")
        _check(self.num_waypoints >= 1, "action_space.num_waypoints", "must be >= 1")
        _check(self.dt > 0, "action_space.dt", "must be > 0")
        _check(self.velocity_window >= 3, "action_space.velocity_window", "must be >= 3")
        _check(self.speed_estimate in SPEED_ESTIMATES, "action_space.speed_estimate", f"must be one of {SPEED_ESTIMATES}")


@dataclass(frozen=True)
class FlowConfig:
    """Flow matching: Euler steps over a time grid; the network predicts the velocity dx/dt.

    `noise_to_data` (Alpamayo-R1): t goes 0 -> 1, x_0 is noise. `data_to_noise` (openpi): t goes
    1 -> 0, x_1 is noise. The update is always x += (t_next - t) * v.
    """

    steps: int = 10
    direction: str = "noise_to_data"
    grid: str = "uniform"
    # Classifier-free guidance for the navigation instruction (Alpamayo 1.5): every step's
    # v = (1 - w) * v(prompt without the route span) + w * v(prompt). None: off (w = 1 is the same).
    nav_guidance_weight: float | None = None

    def validate(self) -> None:
        _check(self.steps >= 1, "flow.steps", "must be >= 1")
        w = self.nav_guidance_weight
        _check(w is None or (isinstance(w, (int, float)) and math.isfinite(w)), "flow.nav_guidance_weight",
               "must be a finite number or null")
        _check(self.direction in FLOW_DIRECTIONS, "flow.direction", f"must be one of {FLOW_DIRECTIONS}")
        _check(self.grid in FLOW_GRIDS, "flow.grid", f"must be one of {FLOW_GRIDS}")


@dataclass(frozen=True)
class ActionProjConfig:
    """Per-waypoint action-in projection (`vla_ros/model/action_proj.py`).

    `fourier_silu` (models/drive-tiny, random:tiny): raw x + sin/cos features and a sinusoidal time
    embedding through one SiLU layer (num_frequencies, max_frequency, time_embed_dim, mlp_dim).
    `alpamayo_v2` (the Alpamayo-R1 release, PerWaypointActionInProjV2): `fourier_features` Fourier
    features per action channel and for the time (log-spaced up to max_frequency), an MLP trunk of
    `encoder_layers` RMSNorm+Linear blocks of width `encoder_hidden`, a final LayerNorm.
    """

    type: str = "fourier_silu"
    num_frequencies: int = 8
    max_frequency: float = 16.0
    time_embed_dim: int = 128
    mlp_dim: int = 0  # 0: the expert's hidden size
    fourier_features: int = 20
    encoder_layers: int = 4
    encoder_hidden: int = 1024

    def validate(self) -> None:
        _check(self.type in ACTION_PROJ_TYPES, "action_proj.type", f"must be one of {ACTION_PROJ_TYPES}")
        _check(self.fourier_features >= 2 and self.fourier_features % 2 == 0, "action_proj.fourier_features", "must be even and >= 2")
        _check(self.encoder_layers >= 1 and self.encoder_hidden >= 1, "action_proj.encoder_layers", "must be >= 1")
        _check(self.num_frequencies >= 1, "action_proj.num_frequencies", "must be >= 1")
        _check(self.time_embed_dim >= 2 and self.time_embed_dim % 2 == 0, "action_proj.time_embed_dim", "must be even and >= 2")
        _check(self.mlp_dim >= 0, "action_proj.mlp_dim", "must be >= 0")


@dataclass(frozen=True)
class HistoryConfig:
    """Ego history tokenizer: per-step xyz deltas, each axis binned uniformly into `bins`."""

    steps: int = 16
    bins: int = 1000
    range_xy: float = 4.0
    range_z: float = 10.0
    # "next_delta_floor": delta i = pose i+1 - pose i, last = -pose N-1, floor(unit * bins).
    # "prev_delta_round" (Alpamayo-R1 DeltaTrajectoryTokenizer): delta 0 = pose 0 from the origin,
    # then pose i - pose i-1, round(unit * (bins - 1)).
    scheme: str = "next_delta_floor"
    # History token of bin b is trajectory token `token_offset + b` (Alpamayo-R1: after the future bins).
    token_offset: int = 0

    @property
    def num_tokens(self) -> int:
        return self.steps * 3

    def validate(self) -> None:
        _check(self.steps >= 2, "history.steps", "must be >= 2")
        _check(self.bins >= 2, "history.bins", "must be >= 2")
        _check(self.range_xy > 0 and self.range_z > 0, "history.range_xy", "ranges must be > 0")
        _check(self.scheme in HISTORY_SCHEMES, "history.scheme", f"must be one of {HISTORY_SCHEMES}")
        _check(self.token_offset >= 0, "history.token_offset", "must be >= 0")


@dataclass(frozen=True)
class ImageConfig:
    """Qwen-VL style preprocessing: resize to multiples of patch*merge within [min, max] pixels,
    normalize with mean/std, cut (temporal_patch, patch, patch) patches in merge-block order."""

    num_cameras: int = 4
    num_frames: int = 4
    patch_size: int = 16
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 163_840
    max_pixels: int = 196_608
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # Camera resolution the model was trained with; `model_input_hw` is where it is resized to,
    # and what the sensing layer should decode frames to (then no resize happens here).
    nominal_height: int = 1080
    nominal_width: int = 1920
    # True (Alpamayo 1.5): any number of cameras (up to MAX_CAMERAS), the runtime config's camera
    # list decides; num_cameras is then only the default. False: exactly num_cameras.
    variable_cameras: bool = False

    def validate(self) -> None:
        _check(self.num_cameras >= 1, "image.num_cameras", "must be >= 1")
        _check(self.num_frames >= 1, "image.num_frames", "must be >= 1")
        _check(self.patch_size >= 1 and self.merge_size >= 1, "image.patch_size", "must be >= 1")
        _check(0 < self.min_pixels <= self.max_pixels, "image.min_pixels", "must be in (0, max_pixels]")
        _check(all(s > 0 for s in self.std), "image.std", "must be > 0")


@dataclass(frozen=True)
class PromptConfig:
    """Prompt text and the names of the special tokens in tokenizer.json."""

    system: str = "You are a driving assistant."
    instruction: str = "Explain the driving decision, then output the trajectory."
    image_pad: str = "<|image_pad|>"
    video_pad: str = "<|video_pad|>"
    vision_start: str = "<|vision_start|>"
    vision_end: str = "<|vision_end|>"
    im_start: str = "<|im_start|>"
    im_end: str = "<|im_end|>"
    history_start: str = "<|traj_history_start|>"
    history_end: str = "<|traj_history_end|>"
    reasoning_start: str = "<|cot_start|>"
    reasoning_end: str = "<|cot_end|>"
    future_start: str = "<|traj_future_start|>"
    # Discrete trajectory tokens are `traj_token_format.format(i)` for i in [0, traj_tokens or history.bins).
    traj_token_format: str = "<i{}>"
    traj_tokens: int = 0  # 0: history.bins (Alpamayo-R1: traj_vocab_size, masked in reasoning)
    # Reasoning stops at (and feeds) this token: Alpamayo-R1 stops at <|traj_future_start|>, so the
    # expert's prefix ends with it. A release's token sampled in the budget's last slot is never fed
    # (the reference's generate stops there), whatever it is.
    reasoning_stop: str = "reasoning_end"
    # Alpamayo 1.5 (`helper.create_message` with camera indices): "<camera name>: " before each
    # camera's first image (camera_labels) and "frame k " before each image (frame_numbers). The
    # caller gives each camera's index (PolicyInputs.camera_ids); its name is camera_names[index],
    # or "Camera {index}" beyond the list.
    camera_labels: bool = False
    frame_numbers: bool = False
    camera_names: tuple[str, ...] = ()
    # The prompt takes a navigation instruction (PolicyInputs.task) as
    # route_start {text} route_end right after the history tokens (Alpamayo 1.5).
    navigation: bool = False
    route_start: str = "<|route_start|>"
    route_end: str = "<|route_end|>"

    @property
    def needs_camera_ids(self) -> bool:
        return self.camera_labels or self.frame_numbers

    def validate(self) -> None:
        _check(self.reasoning_stop in REASONING_STOPS, "prompt.reasoning_stop", f"must be one of {REASONING_STOPS}")
        _check(self.traj_tokens >= 0, "prompt.traj_tokens", "must be >= 0")
        _check("{}" in self.traj_token_format, "prompt.traj_token_format", "must contain '{}'")


@dataclass(frozen=True)
class VLAConfig:
    architecture: str = "kv_expert"
    vlm: dict[str, Any] = field(default_factory=dict)  # transformers Qwen3VLConfig.to_dict()
    expert: dict[str, Any] = field(default_factory=dict)  # overrides of the VLM text config
    action_space: ActionSpaceConfig = field(default_factory=ActionSpaceConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    action_proj: ActionProjConfig = field(default_factory=ActionProjConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    # Informational: the preset or training run this checkpoint came from.
    name: str = ""

    def __post_init__(self) -> None:
        # The family registry (vla_ros/model/families/): one module per architecture.
        _check(is_known(self.architecture), "architecture", f"got {self.architecture!r}, known: {family_names()}")
        _check(isinstance(self.vlm, dict) and "text_config" in self.vlm, "vlm", "must be a Qwen3-VL config with text_config")
        for f in ("action_space", "flow", "action_proj", "history", "image", "prompt"):
            getattr(self, f).validate()
        forbidden = {"num_hidden_layers", "num_key_value_heads", "head_dim"}
        text = self.vlm["text_config"]
        for k in forbidden & set(self.expert):
            _check(self.expert[k] == text.get(k), f"expert.{k}", f"must equal the VLM's ({text.get(k)}): the expert reads the VLM cache layer by layer")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VLAConfig":
        if not isinstance(data, dict):
            raise ModelConfigError("<root>", "must be a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ModelConfigError(unknown[0], f"unknown key (known: {', '.join(sorted(known))})")
        kwargs: dict[str, Any] = {}
        sections = {"action_space": ActionSpaceConfig, "flow": FlowConfig, "action_proj": ActionProjConfig,
                    "history": HistoryConfig, "image": ImageConfig, "prompt": PromptConfig}
        for name, value in data.items():
            if name in sections:
                sub = sections[name]
                if not isinstance(value, dict):
                    raise ModelConfigError(name, "must be an object")
                sub_known = {f.name for f in dataclasses.fields(sub)}
                bad = sorted(set(value) - sub_known)
                if bad:
                    raise ModelConfigError(f"{name}.{bad[0]}", f"unknown key (known: {', '.join(sorted(sub_known))})")
                value = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
                kwargs[name] = sub(**value)
            else:
                kwargs[name] = value
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str | Path) -> "VLAConfig":
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ModelConfigError("<file>", f"'{p}' is not valid JSON: {exc}") from exc
        return cls.from_dict(data)
