"""Loading an Alpamayo-R1 or Alpamayo 1.5 release directory (`nvidia/Alpamayo-R1-10B`,
`nvidia/Alpamayo-1.5-10B` layout) as it is.

    config.json                 AlpamayoR1Config / Alpamayo1_5Config as the reference's
                                save_pretrained writes it (`model_type` alpamayo_r1 / alpamayo1_5):
                                hydra-style sub-configs (`_target_`), `vlm_name_or_path` naming
                                the base VLM (a hub id or a directory)
    model.safetensors           the model's state dict (or shards + model.safetensors.index.json);
                                R1: the action statistics are its `action_space.*` buffers. 1.5:
                                those buffers and the Fourier frequencies are not saved; the
                                statistics are config.json's action_space_cfg
    tokenizer.json (+ files)    the base tokenizer with the trajectory and special tokens added

Alpamayo 1.5 adds to the prompt camera names and frame numbers (`include_camera_ids`,
`include_frame_nums`) and a navigation span, takes any number of cameras, and may guide the flow
towards the navigation instruction (diffusion_cfg `use_classifier_free_guidance`,
`inference_guidance_weight`: `flow.nav_guidance_weight`).

The release's config.json does not describe the VLM: its architecture comes from the base VLM's
own config.json, found from `vlm_name_or_path` (a local directory; `$VLA_ROS_BASE_VLM`; or the
Hugging Face cache). Nothing is downloaded. The result is a `kv_expert` model in the released
structure (`alpamayo_v2` action-in projection, no clipping, the reference speed estimate, the
reference prompt, history tokens and reasoning stop); see docs/alpamayo_r1.md. Every key of
config.json is understood or refused by name.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from vla_ros.model.action_space import ActionStats
from vla_ros.model.config import (ActionProjConfig, ActionSpaceConfig, FlowConfig, HistoryConfig, ImageConfig,
                                  ModelConfigError, PromptConfig, VLAConfig)
from vla_ros.model.safetensors_io import CheckpointError, check_state_keys, copy_weights, read_shapes, weight_files
from vla_ros.model.text_tokenizer import TextTokenizer, TokenizerError

R1_MODEL_TYPE, A15_MODEL_TYPE = "alpamayo_r1", "alpamayo1_5"
RELEASE_MODEL_TYPES = (R1_MODEL_TYPE, A15_MODEL_TYPE)
BASE_VLM_ENV = "VLA_ROS_BASE_VLM"
SYSTEM = "You are a driving assistant that generates safe and accurate actions."
INSTRUCTION = "output the chain-of-thought reasoning of the driving process, then output the future trajectory."
STATS_KEYS = {"action_space.accel_mean": (0, "mean"), "action_space.curvature_mean": (1, "mean"),
              "action_space.accel_std": (0, "std"), "action_space.curvature_std": (1, "std")}
# Alpamayo 1.5 (helper.CAMERA_DISPLAY_NAMES): the label of camera index i in the prompt.
A15_CAMERA_NAMES = ("Front left camera", "Front camera", "Front right camera", "Rear left camera", "Rear camera",
                    "Rear right camera", "Front telephoto camera")

_CLASSES = {
    "action_in_proj_cfg": "models.action_in_proj.PerWaypointActionInProjV2",
    "action_space_cfg": "action_space.unicycle_accel_curvature.UnicycleAccelCurvatureActionSpace",
    "diffusion_cfg": "diffusion.flow_matching.FlowMatching",
    "hist_traj_tokenizer_cfg": "models.delta_tokenizer.DeltaTrajectoryTokenizer",
    "traj_tokenizer_cfg": "action_space.discrete_action_space.DiscreteTrajectoryTokenizer",
}


def release_targets(model_type: str) -> dict[str, str]:
    """The `_target_` of each sub-config in a release of `model_type` (its package's classes)."""
    pkg = {R1_MODEL_TYPE: "alpamayo_r1.", A15_MODEL_TYPE: "alpamayo1_5."}[model_type]
    return {"action_out_proj_cfg": "torch.nn.Linear", **{k: pkg + v for k, v in _CLASSES.items()}}


TARGETS = release_targets(R1_MODEL_TYPE)
# Keys of each sub-config: used, or known to play no part at inference (training-only solvers).
SUB_KEYS = {
    "action_in_proj_cfg": {"hidden_size", "max_freq", "num_enc_layers", "num_fourier_feats"},
    "action_out_proj_cfg": set(),
    "action_space_cfg": {"accel_bounds", "accel_mean", "accel_std", "curvature_bounds", "curvature_mean",
                         "curvature_std", "dt", "n_waypoints", "v_lambda", "v_ridge", "theta_lambda", "theta_ridge",
                         "a_lambda", "a_ridge", "kappa_lambda", "kappa_ridge"},
    "diffusion_cfg": {"int_method", "num_inference_steps", "x_dims"},
    "hist_traj_tokenizer_cfg": {"ego_xyz_min", "ego_xyz_max", "num_bins", "ego_yaw_min", "ego_yaw_max",
                                "predict_yaw", "load_weights"},
    "traj_tokenizer_cfg": {"action_space_cfg", "dims_min", "dims_max", "num_bins"},
}
# Alpamayo 1.5's FlowMatching adds classifier-free guidance (BaseDiffusion / FlowMatching arguments).
A15_SUB_KEYS = {**SUB_KEYS, "diffusion_cfg": SUB_KEYS["diffusion_cfg"] | {"use_classifier_free_guidance",
                                                                          "inference_guidance_weight"}}
TOP_KEYS = set(TARGETS) | {
    "expert_cfg", "expert_non_causal_attention", "keep_same_dtype", "vlm_name_or_path", "vlm_backend",
    "traj_vocab_size", "tokens_per_history_traj", "tokens_per_future_traj", "model_dtype", "attn_implementation",
    "min_pixels", "max_pixels", "add_special_tokens", "vocab_size", "traj_token_start_idx", "traj_token_ids",
    # written by transformers' PretrainedConfig
    "architectures", "model_type", "transformers_version", "dtype", "torch_dtype", "_name_or_path",
    "output_attentions", "output_hidden_states", "return_dict", "use_cache", "tie_word_embeddings",
    "pad_token_id", "bos_token_id", "eos_token_id", "max_generation_length",
}
# Alpamayo1_5Config: the prompt's camera names and frame numbers (helper.create_message).
A15_TOP_KEYS = TOP_KEYS | {"include_camera_ids", "include_frame_nums"}


def _err(key: str, message: str) -> ModelConfigError:
    return ModelConfigError(key, message)


def release_model_type(path: str | Path) -> str | None:
    """`alpamayo_r1` or `alpamayo1_5` for a release directory, else None."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return None
    try:
        model_type = json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, OSError, AttributeError):
        return None
    return model_type if model_type in RELEASE_MODEL_TYPES else None


def is_release_dir(path: str | Path) -> bool:
    """A directory whose config.json says `model_type: alpamayo_r1` or `alpamayo1_5`."""
    return release_model_type(path) is not None


def resolve_base_vlm(name: str, release_dir: Path) -> Path:
    """`vlm_name_or_path` -> a local directory holding the base VLM's config.json, or an error
    saying what to pass. Never downloads."""
    if not name.strip():
        raise _err("vlm_name_or_path", "is empty: it must name the base VLM (a hub id or a directory)")
    candidates = [Path(name).expanduser(), release_dir / name]
    env = os.environ.get(BASE_VLM_ENV)
    if env:
        candidates.insert(0, Path(env).expanduser())
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    snaps = hub.expanduser() / f"models--{name.replace('/', '--')}" / "snapshots"
    if snaps.is_dir():
        candidates += sorted(snaps.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    for c in candidates:
        if (c / "config.json").is_file():
            return c
    if env:
        raise _err("vlm_name_or_path", f"${BASE_VLM_ENV}='{env}' has no config.json (it must be the base VLM "
                   f"{name!r} directory)")
    raise _err("vlm_name_or_path", f"names the base VLM {name!r}, which is not a local directory and not in the "
               f"Hugging Face cache ({snaps}); vla_ros never downloads. Set {BASE_VLM_ENV}=/path/to/"
               f"{name.split('/')[-1]} (a directory with that model's config.json; its weights are not needed)")


def _sub(cfg: dict, name: str) -> dict:
    a15 = cfg.get("model_type") == A15_MODEL_TYPE
    targets = release_targets(A15_MODEL_TYPE if a15 else R1_MODEL_TYPE)
    sub = cfg.get(name)
    if not isinstance(sub, dict):
        raise _err(name, "must be a hydra-style config object")
    target = sub.get("_target_")
    if target != targets[name]:
        raise _err(f"{name}._target_", f"{target!r} is not supported (vla_ros runs {targets[name]})")
    bad = sorted(k for k in sub if not k.startswith("_") and k not in (A15_SUB_KEYS if a15 else SUB_KEYS)[name])
    if bad:
        raise _err(f"{name}.{bad[0]}", "unknown key")
    return sub


def _symmetric(pair: Any, key: str) -> float:
    lo, hi = (float(v) for v in pair)
    if lo != -hi or hi <= 0:
        raise _err(key, f"only symmetric bounds (-b, b) are supported, got {pair}")
    return hi


def _vlm_dict(base_dir: Path, vocab_size: int) -> dict:
    """The base VLM's config.json with the release's vocabulary (transformers 4.57's
    `rope_scaling` + `rope_theta` given as 5.x's `rope_parameters`)."""
    data = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    if "text_config" not in data:
        raise _err("vlm_name_or_path", f"'{base_dir / 'config.json'}' is not a Qwen3-VL config (no text_config)")
    text = data["text_config"]
    if "rope_parameters" not in text and "rope_scaling" in text:
        rope = dict(text.pop("rope_scaling") or {})
        rope.setdefault("rope_type", rope.pop("type", "default"))
        rope["rope_theta"] = text.pop("rope_theta", rope.get("rope_theta", 10000.0))
        text["rope_parameters"] = rope
    text["vocab_size"] = vocab_size
    return data


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _flag(cfg: dict, key: str) -> bool:
    value = cfg.get(key, False)
    if not isinstance(value, bool):
        raise _err(key, f"must be true or false, got {value!r}")
    return value


def _nav_guidance(diff: dict) -> float | None:
    """Alpamayo 1.5's classifier-free guidance from diffusion_cfg: its weight, or None when off
    (use_classifier_free_guidance false, or weight 1, which is the guided velocity alone)."""
    use = diff.get("use_classifier_free_guidance", False)
    if not isinstance(use, bool):
        raise _err("diffusion_cfg.use_classifier_free_guidance", f"must be true or false, got {use!r}")
    try:
        weight = float(diff.get("inference_guidance_weight", 1.0))
    except (TypeError, ValueError):
        raise _err("diffusion_cfg.inference_guidance_weight", "must be a number") from None
    if not math.isfinite(weight):
        raise _err("diffusion_cfg.inference_guidance_weight", f"must be finite, got {weight}")
    return weight if use and weight != 1.0 else None


def release_config(root: str | Path, num_cameras: int = 4, num_frames: int = 4) -> tuple[VLAConfig, Path]:
    """config.json of a release -> (VLAConfig of the released structure, base VLM directory).
    num_cameras / num_frames: the release does not record them (the reference's examples use 4 x 4;
    an Alpamayo 1.5 model takes any camera count, num_cameras is then only the default)."""
    root = Path(root)
    cfg = json.loads((root / "config.json").read_text(encoding="utf-8"))
    model_type = cfg.get("model_type")
    if model_type not in RELEASE_MODEL_TYPES:
        raise _err("model_type", f"{model_type!r} is not one of {RELEASE_MODEL_TYPES}")
    a15 = model_type == A15_MODEL_TYPE
    bad = sorted(set(cfg) - (A15_TOP_KEYS if a15 else TOP_KEYS))
    if bad:
        raise _err(bad[0], f"unknown key in an {'Alpamayo 1.5' if a15 else 'Alpamayo-R1'} config.json")
    if cfg.get("vlm_backend", "qwenvl3").lower() != "qwenvl3":
        raise _err("vlm_backend", f"{cfg['vlm_backend']!r}: only qwenvl3 is built by the reference")
    if not cfg.get("expert_non_causal_attention", True):
        raise _err("expert_non_causal_attention", "false is not supported (action tokens attend both ways)")
    base_dir = resolve_base_vlm(str(cfg.get("vlm_name_or_path") or ""), root)
    proj, space, diff = _sub(cfg, "action_in_proj_cfg"), _sub(cfg, "action_space_cfg"), _sub(cfg, "diffusion_cfg")
    _sub(cfg, "action_out_proj_cfg")
    if diff.get("int_method", "euler") != "euler":
        raise _err("diffusion_cfg.int_method", f"{diff['int_method']!r}: only euler is supported")
    future = _sub(cfg, "traj_tokenizer_cfg") if cfg.get("traj_tokenizer_cfg") is not None else None
    hist = _sub(cfg, "hist_traj_tokenizer_cfg") if cfg.get("hist_traj_tokenizer_cfg") is not None else future
    if hist is None or hist.get("_target_") != release_targets(model_type)["hist_traj_tokenizer_cfg"]:
        raise _err("hist_traj_tokenizer_cfg", "a DeltaTrajectoryTokenizer history tokenizer is required")
    if hist.get("predict_yaw"):
        raise _err("hist_traj_tokenizer_cfg.predict_yaw", "yaw history tokens are not supported")
    traj_vocab = int(cfg.get("traj_vocab_size", 768))
    offset = int(future.get("num_bins", 0)) if (future is not None and cfg.get("hist_traj_tokenizer_cfg")) else 0
    lo, hi = hist.get("ego_xyz_min", (-4, -4, -10)), hist.get("ego_xyz_max", (4, 4, 10))
    rx, ry, rz = (_symmetric((a, b), "hist_traj_tokenizer_cfg.ego_xyz_max") for a, b in zip(lo, hi))
    if rx != ry:
        raise _err("hist_traj_tokenizer_cfg.ego_xyz_max", "x and y ranges must be equal")
    bins = int(hist.get("num_bins", 1000))
    if offset + bins > traj_vocab:
        raise _err("traj_vocab_size", f"{traj_vocab} < future bins {offset} + history bins {bins}")
    n_hist = int(cfg.get("tokens_per_history_traj", 48))
    if n_hist % 3:
        raise _err("tokens_per_history_traj", "must be 3 per history pose (dx, dy, dz)")
    vlm = _vlm_dict(base_dir, int(cfg["vocab_size"]) if "vocab_size" in cfg else 0)
    if not vlm["text_config"]["vocab_size"]:
        raise _err("vocab_size", "missing: the release's total vocabulary (base + trajectory + special tokens)")
    pre = _json(root / "preprocessor_config.json") or _json(base_dir / "preprocessor_config.json")
    vision = vlm.get("vision_config", {})
    min_px = cfg.get("min_pixels") or pre.get("min_pixels") or ImageConfig.min_pixels
    max_px = cfg.get("max_pixels") or pre.get("max_pixels") or ImageConfig.max_pixels
    if a15:  # camera names / frame numbers, the route span and navigation guidance
        # The reference's inference (helper.create_message) names every camera and numbers every
        # frame whenever it is given camera indices, as all its examples do; include_camera_ids /
        # include_frame_nums are only read by its training code. They are checked, not followed.
        _flag(cfg, "include_camera_ids"), _flag(cfg, "include_frame_nums")
        prompt = PromptConfig(system=SYSTEM, instruction=INSTRUCTION, reasoning_stop="future_start",
                              traj_tokens=traj_vocab, camera_labels=True, frame_numbers=True,
                              camera_names=A15_CAMERA_NAMES, navigation=True)
    else:
        prompt = PromptConfig(system=SYSTEM, instruction=INSTRUCTION, reasoning_stop="future_start",
                              traj_tokens=traj_vocab)
    config = VLAConfig(
        architecture="kv_expert", vlm=vlm, expert=dict(cfg.get("expert_cfg") or {}),
        action_space=ActionSpaceConfig(
            num_waypoints=int(space.get("n_waypoints", 64)), dt=float(space.get("dt", 0.1)),
            accel_bound=_symmetric(space.get("accel_bounds", (-9.8, 9.8)), "action_space_cfg.accel_bounds"),
            curvature_bound=_symmetric(space.get("curvature_bounds", (-0.2, 0.2)), "action_space_cfg.curvature_bounds"),
            clip=False, speed_estimate="trapezoid_smooth", v_lambda=float(space.get("v_lambda", 1e-6)),
            v_ridge=float(space.get("v_ridge", 1e-4))),
        flow=FlowConfig(steps=int(diff.get("num_inference_steps", 10)), direction="noise_to_data", grid="uniform",
                        nav_guidance_weight=_nav_guidance(diff) if a15 else None),
        action_proj=ActionProjConfig(
            type="alpamayo_v2", max_frequency=float(proj.get("max_freq", 100.0)),
            fourier_features=int(proj.get("num_fourier_feats", 20)), encoder_layers=int(proj.get("num_enc_layers", 4)),
            encoder_hidden=int(proj.get("hidden_size", 1024))),
        history=HistoryConfig(steps=n_hist // 3, bins=bins, range_xy=rx, range_z=rz, scheme="prev_delta_round",
                              token_offset=offset),
        image=ImageConfig(num_cameras=num_cameras, num_frames=num_frames,
                          patch_size=int(vision.get("patch_size", 16)), merge_size=int(vision.get("spatial_merge_size", 2)),
                          temporal_patch_size=int(vision.get("temporal_patch_size", 2)),
                          min_pixels=int(min_px), max_pixels=int(max_px),
                          mean=tuple(pre.get("image_mean", (0.5, 0.5, 0.5))), std=tuple(pre.get("image_std", (0.5, 0.5, 0.5))),
                          variable_cameras=a15),
        prompt=prompt,
        name=f"{model_type}:{root.name}")
    return config, base_dir


def release_tokenizer(root: Path, config: VLAConfig, cfg: dict) -> TextTokenizer:
    """The release's tokenizer.json, checked against the ids its config.json recorded."""
    path = root / "tokenizer.json"
    if not path.is_file():
        raise TokenizerError(f"'{root}' has no tokenizer.json (the release's tokenizer with the trajectory tokens)")
    tok = TextTokenizer.load(path, config.prompt, config.prompt.traj_tokens)
    ids = tok.ids
    if "traj_token_start_idx" in cfg and cfg["traj_token_start_idx"] != ids.traj_first:
        raise TokenizerError(f"tokenizer.json puts <i0> at {ids.traj_first}, config.json says {cfg['traj_token_start_idx']}")
    recorded = cfg.get("traj_token_ids") or {}
    for key, got in (("future_start", ids.future_start), ("history_start", ids.history_start),
                     ("history_end", ids.history_end)):
        if key in recorded and recorded[key] != got:
            raise TokenizerError(f"tokenizer.json has traj_token_ids.{key} = {got}, config.json says {recorded[key]}")
    return tok


def _config_stats(cfg: dict) -> ActionStats | None:
    """The statistics `action_space_cfg` gives (None when it gives none of the four)."""
    space = cfg.get("action_space_cfg") or {}
    names = ("accel_mean", "curvature_mean", "accel_std", "curvature_std")
    present = [n for n in names if n in space]
    if not present:
        return None
    if len(present) < len(names):
        raise ValueError(f"config.json's action_space_cfg gives {present} but lacks "
                         f"{[n for n in names if n not in present]}")
    # The reference holds them as float32 tensors (torch.tensor(value)).
    am, cm, as_, cs = (float(np.float32(space[n])) for n in names)
    return ActionStats(mean=(am, cm), std=(as_, cs))


def release_stats(files: list[Path], cfg: dict | None = None) -> ActionStats:
    """The action normalization. Alpamayo-R1 saves it as the `action_space.*` buffers; Alpamayo
    1.5's buffers are not persistent, so its values are config.json's `action_space_cfg` (also
    what the reference falls back to when an R1 file lacks the buffers)."""
    cfg = cfg or {}
    mean, std = [0.0, 0.0], [0.0, 0.0]
    seen = set()
    if cfg.get("model_type") != A15_MODEL_TYPE:  # 1.5: buffers in a file would not be loaded by the reference
        for f in files:
            with safe_open(str(f), framework="pt", device="cpu") as sf:
                for k in STATS_KEYS.keys() & set(sf.keys()):
                    i, which = STATS_KEYS[k]
                    (mean if which == "mean" else std)[i] = float(sf.get_tensor(k).float())
                    seen.add(k)
    if seen != set(STATS_KEYS):
        from_config = _config_stats(cfg)
        if from_config is None:
            lacking = ("config.json's action_space_cfg gives no accel_mean / accel_std / curvature_mean / "
                       "curvature_std")
            if cfg.get("model_type") == A15_MODEL_TYPE:
                raise ValueError(f"{lacking}: Alpamayo 1.5 keeps its action statistics there (its buffers are "
                                 "not saved), so the action normalization is unknown")
            raise ValueError(f"the checkpoint lacks the action statistics buffers {sorted(set(STATS_KEYS) - seen)} "
                             f"and {lacking}: the action normalization is unknown")
        mean, std = list(from_config.mean), list(from_config.std)
    if not all(s > 0 for s in std):
        raise ValueError(f"the action std {std} must be > 0")
    return ActionStats(mean=(mean[0], mean[1]), std=(std[0], std[1]))


def non_persistent_keys(model: torch.nn.Module, cfg: dict) -> set[str]:
    """Keys of our model that a release of this type does not save: Alpamayo 1.5's action
    statistics and Fourier frequencies are non-persistent buffers (recomputed from config.json)."""
    keys = set(STATS_KEYS)
    if cfg.get("model_type") == A15_MODEL_TYPE:
        keys |= {k for k, _ in model.named_buffers() if k.startswith("action_in_proj.") and k.endswith(".freqs")}
    return keys


def load_release(root: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 num_cameras: int = 4, num_frames: int = 4) -> tuple[torch.nn.Module, TextTokenizer]:
    """Build the released structure from config.json and stream the weights in tensor by tensor
    from the memory-mapped safetensors (peak memory: the model in `dtype` plus one tensor)."""
    from vla_ros.model.build import build_model

    root = Path(root)
    try:
        config, _ = release_config(root, num_cameras, num_frames)
        cfg = json.loads((root / "config.json").read_text(encoding="utf-8"))
        tokenizer = release_tokenizer(root, config, cfg)
    except (ModelConfigError, TokenizerError) as exc:
        raise CheckpointError(f"'{root / 'config.json'}': {exc}") from exc
    files = weight_files(root)
    found = read_shapes(files)
    try:
        stats = release_stats(files, cfg)
    except ValueError as exc:
        raise CheckpointError(f"'{root}': {exc}") from exc
    model = build_model(config, stats, device=device, dtype=dtype, seed=None)
    derived = non_persistent_keys(model, cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in derived}
    weights = {k: v for k, v in found.items() if k not in derived}
    check_state_keys(expected, weights, str(root))
    copy_weights(model, files, skip=derived)  # statistics and 1.5's frequencies are not weights
    return model.eval(), tokenizer
