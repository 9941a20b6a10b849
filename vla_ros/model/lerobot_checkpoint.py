"""LeRobot pi0 / pi0.5 policy directories, loaded as they are (`--model DIR`), into `joint_mot`.

A directory written by LeRobot's `save_pretrained` (policy and processors) holds

    config.json                     type pi0 | pi05, cameras (input_features), dims, steps, sizes by name
    model.safetensors               the weights under LeRobot's key names
    policy_preprocessor.json        the input steps; the normalizer's statistics file
    policy_postprocessor.json       the output steps; the unnormalizer's statistics file
    *_normalizer_processor.safetensors / *_unnormalizer_processor.safetensors
    tokenizer.json                  not written by LeRobot (it names a hub id): must be added, or
                                    passed as a local path
    lerobot_overrides.json          optional, vla_ros's test fixtures only: sizes smaller than the
                                    variant names say (see scripts/reference_fixtures/lerobot.py)

Unlike LeRobot, which prints loading failures and keeps random weights, every missing file,
missing or unexpected weight, wrong shape, missing statistic or unsupported option is a
`CheckpointError` that names it. Nothing is fetched from a hub. See docs/pi0.md.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

from vla_ros.model.safetensors_io import PICKLE_SUFFIXES, CheckpointError, check_state_keys, copy_weights, read_shapes
from vla_ros.model.config import ActionSpaceConfig, FlowConfig, ImageConfig, VLAConfig

TYPES = ("pi0", "pi05")
# LeRobot's get_gemma_config and PaliGemmaWithExpertModel (lerobot 0.6.1): the sizes behind the names.
GEMMA_VARIANTS = {
    "gemma_2b": dict(width=2048, depth=18, mlp_dim=16384, num_heads=8, num_kv_heads=1, head_dim=256),
    "gemma_300m": dict(width=1024, depth=18, mlp_dim=4096, num_heads=8, num_kv_heads=1, head_dim=256),
}
VOCAB_SIZE = 257152
SIGLIP_SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                     patch_size=14)
EMPTY_CAMERA = "observation.images.empty_camera_"


def is_lerobot_policy_dir(path: str | Path) -> bool:
    """A directory with config.json beside LeRobot's policy_preprocessor.json (the LeRobot loader
    then reports whatever is wrong with it, a broken config.json included)."""
    root = Path(path)
    return root.is_dir() and (root / "config.json").is_file() and (root / "policy_preprocessor.json").is_file()


class PromptTokenizer:
    """The PaliGemma tokenizer as LeRobot's TokenizerProcessorStep uses it: special tokens added
    (`<bos>` first), truncated to the prompt length; padding is not fed (see joint_mot)."""

    def __init__(self, tokenizer: Tokenizer, source: str) -> None:
        self.tokenizer = tokenizer
        self.source = source

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode_prompt(self, text: str, max_length: int) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=True).ids[:max_length]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)


def _json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"'{path.parent}' is missing {path.name} (a LeRobot policy directory has it)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"'{path}' is not valid JSON: {exc}") from exc


def _step(root: Path, pipeline: dict, registry_name: str, where: str) -> dict:
    steps = [s for s in pipeline.get("steps", []) if s.get("registry_name") == registry_name]
    if len(steps) != 1:
        raise CheckpointError(f"'{root / where}' must have exactly one {registry_name!r} step, has {len(steps)}")
    return steps[0]


def _stats(root: Path, step: dict, key: str, names: tuple[str, ...], dim: int, where: str) -> dict[str, torch.Tensor]:
    state_file = step.get("state_file")
    if not state_file or not (root / state_file).is_file():
        raise CheckpointError(f"'{root / where}': the statistics file {state_file!r} of its "
                              f"{step['registry_name']} step is missing")
    table = load_file(str(root / state_file))
    out = {}
    for n in names:
        t = table.get(f"{key}.{n}")
        if t is None:
            raise CheckpointError(f"'{root / state_file}' has no '{key}.{n}' (needed for this normalization mode)")
        if tuple(t.shape) != (dim,):
            raise CheckpointError(f"'{root / state_file}': '{key}.{n}' has shape {list(t.shape)}, expected [{dim}]")
        if not torch.isfinite(t).all():
            raise CheckpointError(f"'{root / state_file}': '{key}.{n}' contains NaN or inf")
        out[n] = t.float()
    return out


def _tokenizer(root: Path, pre: dict, overrides: dict, given: str | Path | None) -> PromptTokenizer:
    hub_id = _step(root, pre, "tokenizer_processor", "policy_preprocessor.json")["config"].get("tokenizer_name", "?")
    candidates = []
    if given is not None:
        g = Path(given)
        candidates.append(g / "tokenizer.json" if g.is_dir() else g)
    mapped = overrides.get("tokenizer", {}).get(hub_id)
    if mapped is not None:
        candidates.append(root / mapped / "tokenizer.json")
    candidates.append(root / "tokenizer.json")
    for c in candidates:
        if c.is_file():
            try:
                return PromptTokenizer(Tokenizer.from_file(str(c)), str(c))
            except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
                raise CheckpointError(f"'{c}' is not a valid tokenizer.json: {exc}") from exc
        if given is not None and c == candidates[0]:
            raise CheckpointError(f"tokenizer '{given}' has no tokenizer.json")
    raise CheckpointError(
        f"'{root}' names the tokenizer {hub_id!r} (a hub id) but holds no tokenizer.json, and nothing is "
        f"downloaded: copy that tokenizer's tokenizer.json into '{root}', or pass a local tokenizer path")


def lerobot_spec(root: Path, tokenizer: str | Path | None = None) -> tuple[VLAConfig, Any, PromptTokenizer]:
    """Read config.json, the processors and their statistics -> (VLAConfig, JointMoTSpec, tokenizer)."""
    from vla_ros.model.families.joint_mot import GemmaSize, JointMoTSpec, VisionSize

    cfg = _json(root / "config.json")
    kind = cfg.get("type")
    if kind not in TYPES:
        raise CheckpointError(f"'{root / 'config.json'}': LeRobot policy type {kind!r} is not supported "
                              f"(vla_ros runs {', '.join(TYPES)})")
    if cfg.get("use_relative_actions"):
        raise CheckpointError(f"'{root / 'config.json'}': use_relative_actions is not supported yet")
    if (cfg.get("rtc_config") or {}).get("enabled"):
        raise CheckpointError(f"'{root / 'config.json'}': real-time chunking (rtc_config.enabled) is not supported")
    overrides = json.loads((root / "lerobot_overrides.json").read_text()) if (root / "lerobot_overrides.json").is_file() else {}
    variants = {**GEMMA_VARIANTS, **overrides.get("gemma_variants", {})}
    try:
        vlm = GemmaSize(**{k: variants[cfg["paligemma_variant"]][k] for k in GemmaSize.__dataclass_fields__})
        expert = GemmaSize(**{k: variants[cfg["action_expert_variant"]][k] for k in GemmaSize.__dataclass_fields__})
        vision = VisionSize(**{**SIGLIP_SO400M, **overrides.get("vision", {})})
        features = cfg["input_features"]
        cameras = tuple(k for k, f in features.items() if f["type"] == "VISUAL" and not k.startswith(EMPTY_CAMERA))
        state_dim = int(features["observation.state"]["shape"][0])
        action_dim = int(cfg["output_features"]["action"]["shape"][0])
        res = cfg["image_resolution"]
        mapping = cfg["normalization_mapping"]
    except KeyError as exc:
        raise CheckpointError(f"'{root / 'config.json'}' lacks {exc} (or names an unknown Gemma variant)") from exc
    if res[0] != res[1]:
        raise CheckpointError(f"'{root / 'config.json'}': image_resolution {res} is not square")
    if mapping.get("STATE") != mapping.get("ACTION") or mapping.get("STATE") not in ("MEAN_STD", "QUANTILES"):
        raise CheckpointError(f"'{root / 'config.json'}': normalization_mapping {mapping} is not supported "
                              "(STATE and ACTION both MEAN_STD or both QUANTILES)")
    if not cameras:
        raise CheckpointError(f"'{root / 'config.json'}' names no camera in input_features")
    mode = mapping["STATE"]
    pre, post = _json(root / "policy_preprocessor.json"), _json(root / "policy_postprocessor.json")
    for pipeline, name, where in ((pre, "relative_actions_processor", "policy_preprocessor.json"),
                                  (post, "absolute_actions_processor", "policy_postprocessor.json")):
        for s in pipeline.get("steps", []):
            if s.get("registry_name") == name and s.get("config", {}).get("enabled"):
                raise CheckpointError(f"'{root / where}': {name} is enabled; relative actions are not supported yet")
    norm = _step(root, pre, "normalizer_processor", "policy_preprocessor.json")
    unnorm = _step(root, post, "unnormalizer_processor", "policy_postprocessor.json")
    names = ("mean", "std") if mode == "MEAN_STD" else ("q01", "q99")
    tok_cfg = _step(root, pre, "tokenizer_processor", "policy_preprocessor.json")["config"]
    if tok_cfg.get("padding_side", "right") != "right":
        raise CheckpointError(f"'{root / 'policy_preprocessor.json'}': only right padding is supported")
    tok = _tokenizer(root, pre, overrides, tokenizer)
    spec = JointMoTSpec(
        variant=kind, vlm=vlm, expert=expert, vision=vision, vocab_size=int(overrides.get("vocab_size", VOCAB_SIZE)),
        resolution=int(res[0]), cameras=cameras, state_dim=state_dim, action_dim=action_dim,
        max_state_dim=int(cfg["max_state_dim"]), max_action_dim=int(cfg["max_action_dim"]),
        chunk_size=int(cfg["chunk_size"]), min_period=float(cfg["min_period"]), max_period=float(cfg["max_period"]),
        tokenizer_max_length=int(tok_cfg.get("max_length", cfg["tokenizer_max_length"])),
        normalization=mode, eps=float(norm["config"].get("eps", 1e-8)),
        state_stats=_stats(root, norm, "observation.state", names, state_dim, "policy_preprocessor.json"),
        action_stats=_stats(root, unnorm, "action", names, action_dim, "policy_postprocessor.json"),
        action_names=tuple(cfg.get("action_feature_names") or ()))
    if tok.vocab_size > spec.vocab_size:
        raise CheckpointError(f"tokenizer '{tok.source}' has {tok.vocab_size} tokens but the model's vocabulary "
                              f"is {spec.vocab_size}")
    return joint_mot_config(spec, int(cfg["num_inference_steps"]), f"lerobot {kind} ({root.name})"), spec, tok


def joint_mot_config(spec: Any, steps: int, name: str) -> VLAConfig:
    """The generic VLAConfig of a joint_mot model (what the runtime reads: cameras, flow, chunk)."""
    vlm = spec.vlm
    return VLAConfig(
        architecture="joint_mot", name=name,
        vlm={"text_config": {"hidden_size": vlm.width, "num_hidden_layers": vlm.depth, "head_dim": vlm.head_dim,
                             "num_key_value_heads": vlm.num_kv_heads, "vocab_size": spec.vocab_size}},
        action_space=ActionSpaceConfig(num_waypoints=spec.chunk_size),
        flow=FlowConfig(steps=steps, direction="data_to_noise"),
        image=ImageConfig(num_cameras=len(spec.cameras), num_frames=1, nominal_height=spec.resolution,
                          nominal_width=spec.resolution))


def load_lerobot_policy(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                        tokenizer: str | Path | None = None) -> tuple[torch.nn.Module, PromptTokenizer]:
    """A LeRobot pi0 / pi0.5 policy directory -> (joint_mot model in eval mode, tokenizer)."""
    from vla_ros.model.families.joint_mot import JointMoT

    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"LeRobot policy directory '{root}' does not exist")
    config, spec, tok = lerobot_spec(root, tokenizer)
    weights = root / "model.safetensors"
    if not weights.is_file():
        pickles = sorted(p.name for p in root.iterdir() if p.suffix in PICKLE_SUFFIXES)
        raise CheckpointError(f"'{root}' has no model.safetensors" + (
            f" (only pickled {', '.join(pickles)}, refused: loading them can execute code)" if pickles else ""))
    found = read_shapes([weights])
    with torch.device("meta"):
        model = JointMoT(config, spec)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # lm_heads: in LeRobot's module tree and file, never used for actions: shape-checked, not loaded.
    unused = {"model.paligemma_with_expert.paligemma.lm_head.weight": (spec.vocab_size, spec.vlm.width),
              "model.paligemma_with_expert.gemma_expert.lm_head.weight": (spec.vocab_size, spec.expert.width)}
    check_state_keys({**expected, **{k: s for k, s in unused.items() if k in found}}, found, str(weights))
    model.to_empty(device=device)
    copy_weights(model, [weights])  # the lm_heads are not in the module tree: skipped
    model.to(dtype=dtype)
    return model.eval(), tok
