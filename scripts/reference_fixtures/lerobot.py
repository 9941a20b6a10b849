#!/usr/bin/env python3
"""Golden fixtures for the joint-attention family from LeRobot 0.6.1 itself (pi0 and pi0.5).

Run through the dispatcher, which makes the side venv (python 3.12, lerobot[pi]==0.6.1, torch 2.8.0):

    scripts/make_reference_fixtures lerobot                  # writes test/fixtures/lerobot_{pi0,pi05}_tiny/
    scripts/make_reference_fixtures lerobot --variant pi05   # one variant
    scripts/make_reference_fixtures lerobot --rtc-only       # only (re)write rtc.{safetensors,json} of the
                                                             # existing fixtures (their other files untouched)
    scripts/make_reference_fixtures lerobot --time test/fixtures/lerobot_pi0_tiny --repeats 10
                                                             # bench mode: time predict_action_chunk, print JSON
    python3 scripts/reference_fixtures/lerobot.py --time-full-size pi0 --device cuda
                                                             # real-size random pi0 on a GPU (bench/lerobot.py --full-size)

Each fixture directory is what LeRobot's own `save_pretrained` writes (config.json, model.safetensors,
policy_preprocessor.json / policy_postprocessor.json and their normalizer .safetensors), plus:
  - tokenizer.json / tokenizer_config.json: a tiny byte-level BPE tokenizer built here (no hub). The
    preprocessor JSON keeps LeRobot's own tokenizer id; `lerobot_overrides.json` says it resolves here.
  - lerobot_overrides.json: the size overrides. LeRobot hard-codes PaliGemma/Gemma widths, depths, the
    SigLIP tower and the 257152-token vocabulary behind the variant names in config.json, so a small model
    needs them replaced; the same overrides are needed to reload the directory with LeRobot.
  - reference.safetensors + reference.json: raw inputs, the preprocessed batch, the model's images and
    prefix embedding, the noise, every flow step's x/t/v, the normalized and unnormalized action chunk,
    and select_action's first action.
  - rtc.safetensors + rtc.json: real-time chunking (RTC) as LeRobot runs it: the reloaded policy with
    `rtc_config=RTCConfig(enabled=True, ...)` through `predict_action_chunk(batch, noise=...,
    inference_delay=d, prev_chunk_left_over=..., execution_horizon=H)`, one case per prefix schedule,
    the leftover being the end of the recorded chunk; the same noise unguided; and LeRobot's prefix
    weights (RTCProcessor.get_prefix_weights) for a grid of (schedule, d, H, T).
After writing, the directory is reloaded from disk with LeRobot (from_pretrained + processors) and must
reproduce the recorded actions bit for bit; every input is perturbed to show that the actions depend on
it (recorded under "sensitivity"). Weights are random (seeded) and rescaled so that nothing vanishes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

# this file is named like the package it drives: keep its folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LEROBOT_VERSION = "0.6.1"
TOKENIZER_ID = "google/paligemma-3b-pt-224"  # what LeRobot's pi0/pi05 processors name

# Sizes that replace LeRobot's hard-coded ones (keyed by the variant names config.json carries).
# num_heads stays 8: LeRobot's joint-attention layer reshapes with a literal 8 heads.
OVERRIDES = {
    "lerobot_version": LEROBOT_VERSION,
    "gemma_variants": {
        "gemma_2b": {"width": 64, "depth": 2, "mlp_dim": 128, "num_heads": 8, "num_kv_heads": 1, "head_dim": 16},
        "gemma_300m": {"width": 32, "depth": 2, "mlp_dim": 64, "num_heads": 8, "num_kv_heads": 1, "head_dim": 16},
    },
    "vocab_size": 320,  # PaliGemma text vocab, its image_token_index, and the action expert's (unused) lm_head
    "vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
               "patch_size": 14},  # SigLIP; projection_dim follows the PaliGemma width
    "tokenizer": {TOKENIZER_ID: "."},  # the tokenizer id resolves to this directory
}

# Per-variant fixture: cameras (name -> raw C,H,W), state/action dims, config fields, stats.
VARIANTS = {
    "pi0": {
        "dir": "lerobot_pi0_tiny",
        "cameras": {"observation.images.top": (3, 48, 64), "observation.images.wrist": (3, 48, 64)},
        "config": {"empty_cameras": 1, "image_resolution": (56, 56), "paligemma_variant": "gemma_2b",
                   "action_expert_variant": "gemma_300m"},
        "norm": "MEAN_STD",
    },
    "pi05": {
        "dir": "lerobot_pi05_tiny",
        "cameras": {"observation.images.base_0_rgb": (3, 56, 56),
                    "observation.images.left_wrist_0_rgb": (3, 40, 72)},
        "config": {"image_resolution": (56, 56), "paligemma_variant": "gemma_2b",
                   "action_expert_variant": "gemma_300m"},
        "norm": "QUANTILES",
    },
}
STATE_DIM = 6
ACTION_DIM = 6
BATCH = 2
TASKS = ["pick up the red cube and place it in the bowl", "open the top drawer"]
SEED = 1234
NOISE_SEED = 77
RTC_NOISE_SEED = 78  # the new chunk's noise (the previous chunk is the recorded one)
# name: LeRobot schedule, inference delay d, execution horizon H, max guidance weight, actions of the
# recorded chunk already executed (the leftover starts there). exp's leftover (15) is shorter than H.
RTC_CASES = {
    "zeros": ("ZEROS", 5, 10, 10.0, 8),
    "ones": ("ONES", 3, 8, 5.0, 8),
    "linear": ("LINEAR", 4, 12, 10.0, 10),
    "exp": ("EXP", 2, 20, 10.0, 35),
}
RTC_WEIGHT_GRID = [(0, 5, 10), (3, 8, 20), (4, 4, 10), (6, 4, 10), (2, 12, 12), (5, 30, 20), (1, 1, 50),
                   (3, 10, 50), (12, 40, 50)]  # (d, H, T) for get_prefix_weights


def log(msg: str) -> None:
    print(f"[lerobot fixtures] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# overrides: the only places where this script reaches into LeRobot
# ----------------------------------------------------------------------------------------------
def apply_overrides(overrides: dict, tokenizer_dir: Path) -> None:
    """Make LeRobot build the small model the overrides describe, and resolve its tokenizer id locally."""
    from lerobot.policies.pi0 import modeling_pi0
    from lerobot.policies.pi05 import modeling_pi05
    from lerobot.processor import tokenizer_processor
    from transformers import AutoTokenizer

    table = overrides["gemma_variants"]
    vocab = overrides["vocab_size"]
    vision = overrides["vision"]

    for module in (modeling_pi0, modeling_pi05):
        gemma_config_cls = module.GemmaConfig
        # keep LeRobot's own classes across repeated calls (build, then reload)
        originals = module.__dict__.setdefault("_fixture_originals", (
            module.PaliGemmaForConditionalGenerationWithPiGemma, module.PiGemmaForCausalLM))
        real_paligemma, real_expert = originals

        def get_gemma_config(variant, _cls=gemma_config_cls):
            if variant not in table:
                raise ValueError(f"no size override for variant {variant!r}")
            return _cls(**table[variant])

        def paligemma(config, _real=real_paligemma):
            config.text_config.vocab_size = vocab
            config.vocab_size = vocab
            config.image_token_index = vocab
            for key, value in vision.items():
                setattr(config.vision_config, key, value)
            config.vision_config.projection_dim = config.text_config.hidden_size
            config.projection_dim = config.text_config.hidden_size
            config.text_config.num_image_tokens = (config.vision_config.image_size // vision["patch_size"]) ** 2
            return _real(config=config)

        def expert(config, _real=real_expert):
            config.vocab_size = vocab
            return _real(config=config)

        module.get_gemma_config = get_gemma_config
        module.PaliGemmaForConditionalGenerationWithPiGemma = paligemma
        module.PiGemmaForCausalLM = expert

    mapping = {k: str((tokenizer_dir / v).resolve()) for k, v in overrides["tokenizer"].items()}

    class LocalAutoTokenizer:
        @staticmethod
        def from_pretrained(name, *args, **kwargs):
            if name not in mapping:
                raise ValueError(f"tokenizer {name!r} has no local copy (known: {sorted(mapping)})")
            return AutoTokenizer.from_pretrained(mapping[name], *args, local_files_only=True, **kwargs)

    tokenizer_processor.AutoTokenizer = LocalAutoTokenizer


def build_tokenizer(out_dir: Path) -> None:
    """A tiny byte-level BPE tokenizer with Gemma's special-token ids (pad 0, eos 1, bos 2, unk 3), <bos> first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    words = ("pick up the red blue green cube block bowl place it in on open close top bottom drawer door "
             "push pull move left right arm gripper grasp put into".split())
    corpus = [" ".join(words[i:] + words[:i]) for i in range(len(words))]
    corpus += [f"Task: {t}, State: {' '.join(str((i * 37 + j * 11) % 256) for j in range(8))};\nAction: "
               for i, t in enumerate(TASKS * 8)]
    corpus += [t + "\n" for t in TASKS]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=OVERRIDES["vocab_size"] - 16, show_progress=False,
                                  special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B",
                                                       special_tokens=[("<bos>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>")
    assert (fast.pad_token_id, fast.eos_token_id, fast.bos_token_id) == (0, 1, 2)
    assert len(fast) <= OVERRIDES["vocab_size"], len(fast)
    fast.save_pretrained(str(out_dir))
    # name the class that transformers 4.x and 5.x both resolve (5.x writes its new alias)
    cfg_path = out_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg.pop("backend", None)
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------
# building
# ----------------------------------------------------------------------------------------------
def make_config(variant: str):
    from lerobot.configs import FeatureType, NormalizationMode, PolicyFeature
    from lerobot.policies.pi0.configuration_pi0 import PI0Config
    from lerobot.policies.pi05.configuration_pi05 import PI05Config

    spec = VARIANTS[variant]
    inputs = {k: PolicyFeature(type=FeatureType.VISUAL, shape=s) for k, s in spec["cameras"].items()}
    inputs["observation.state"] = PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,))
    outputs = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))}
    cls = PI0Config if variant == "pi0" else PI05Config
    config = cls(input_features=inputs, output_features=outputs, device="cpu", dtype="float32", **spec["config"])
    assert config.normalization_mapping["ACTION"] == NormalizationMode[spec["norm"]]
    assert config.normalization_mapping["STATE"] == NormalizationMode[spec["norm"]]
    return config


def make_stats(variant: str, gen: torch.Generator) -> dict:
    """Dataset statistics as a LeRobot dataset carries them (all kinds, so the mode decides which are read)."""
    stats = {}
    for key, dim in (("observation.state", STATE_DIM), ("action", ACTION_DIM)):
        mean = torch.randn(dim, generator=gen) * 0.5
        std = 0.2 + torch.rand(dim, generator=gen)
        stats[key] = {"mean": mean, "std": std, "min": mean - 3 * std, "max": mean + 3 * std,
                      "q01": mean - 2.3 * std, "q99": mean + 2.3 * std * (1 + 0.1 * torch.rand(dim, generator=gen)),
                      "count": torch.tensor([1000])}
    for cam in VARIANTS[variant]["cameras"]:
        stats[cam] = {"mean": torch.full((3, 1, 1), 0.5), "std": torch.full((3, 1, 1), 0.25)}
    return stats


@torch.no_grad()
def randomize(policy, gen: torch.Generator) -> None:
    """Seeded weights on a scale where every path (norm gains, adaRMS, biases) changes the output."""
    layer_norms = {id(m.weight) for m in policy.modules() if isinstance(m, torch.nn.LayerNorm)}
    for name, p in policy.named_parameters():
        if p.ndim == 1:  # SigLIP LayerNorm gains around 1; Gemma's (1 + w) gains and biases around 0
            p.copy_((1.0 if id(p) in layer_norms else 0.0) + 0.2 * torch.randn(p.shape, generator=gen))
        else:
            fan_in = p.shape[-1] if ("embed_tokens" in name or "position_embedding" in name) else p[0].numel()
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
    # tied as in real checkpoints: LeRobot's loader copies lm_head into embed_tokens (key-order dependent)
    paligemma = policy.model.paligemma_with_expert.paligemma
    paligemma.lm_head.weight.copy_(paligemma.model.language_model.embed_tokens.weight)


def make_inputs(variant: str, gen: torch.Generator, stats: dict) -> dict:
    spec = VARIANTS[variant]
    obs = {}
    for cam, (c, h, w) in spec["cameras"].items():
        # smooth gradients plus noise, in LeRobot's float [0, 1] channel-first convention
        yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
        base = torch.stack([yy, xx, (yy + xx) / 2])[:c]
        img = 0.6 * base[None] + 0.4 * torch.rand((BATCH, c, h, w), generator=gen)
        obs[cam] = img.clamp(0, 1)
    s = stats["observation.state"]
    obs["observation.state"] = s["mean"] + s["std"] * torch.randn((BATCH, STATE_DIM), generator=gen)
    obs["task"] = list(TASKS)
    return obs


class Recorder:
    """Wraps the policy's own methods to record what flows through them (no behaviour change)."""

    def __init__(self, policy):
        self.policy = policy
        self.data: dict = {}
        model = policy.model
        orig_pre, orig_prefix, orig_noise, orig_step = (policy._preprocess_images, model.embed_prefix,
                                                        model.sample_noise, model.denoise_step)

        def preprocess_images(batch):
            images, masks = orig_pre(batch)
            self.data["images"], self.data["img_masks"] = images, masks
            return images, masks

        def embed_prefix(*a, **k):
            out = orig_prefix(*a, **k)
            self.data["prefix"] = out
            return out

        def sample_noise(shape, device):
            noise = orig_noise(shape, device)
            self.data["sampled_noise"] = noise.clone()
            return noise

        def denoise_step(**k):
            v = orig_step(**k)
            self.data.setdefault("x", []).append(k["x_t"].clone())
            self.data.setdefault("t", []).append(k["timestep"].clone())
            self.data.setdefault("v", []).append(v.clone())
            return v

        policy._preprocess_images = preprocess_images
        model.embed_prefix = embed_prefix
        model.sample_noise = sample_noise
        model.denoise_step = denoise_step

    def reset(self):
        self.data = {}


def run_once(policy, pre, post, obs, noise_seed: int, noise=None):
    torch.manual_seed(noise_seed)
    batch = pre(dict(obs))
    kwargs = {} if noise is None else {"noise": noise}
    normalized = policy.predict_action_chunk(batch, **kwargs)
    actions = post(normalized)
    return batch, normalized, actions


def build_variant(variant: str, out_root: Path) -> dict:
    from lerobot.policies.pi0.modeling_pi0 import PI0Policy
    from lerobot.policies.pi0.processor_pi0 import make_pi0_pre_post_processors
    from lerobot.policies.pi05.modeling_pi05 import PI05Policy
    from lerobot.policies.pi05.processor_pi05 import make_pi05_pre_post_processors

    spec = VARIANTS[variant]
    out = out_root / spec["dir"]
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    build_tokenizer(out)
    (out / "lerobot_overrides.json").write_text(json.dumps(OVERRIDES, indent=2) + "\n")
    apply_overrides(OVERRIDES, out)

    gen = torch.Generator().manual_seed(SEED + (0 if variant == "pi0" else 1))
    config = make_config(variant)
    policy_cls = PI0Policy if variant == "pi0" else PI05Policy
    make_processors = make_pi0_pre_post_processors if variant == "pi0" else make_pi05_pre_post_processors
    policy = policy_cls(config)
    randomize(policy, gen)
    policy.eval()
    stats = make_stats(variant, gen)
    pre, post = make_processors(config, dataset_stats=stats)

    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    log(f"{variant}: saved {sum(p.numel() for p in policy.parameters())} parameters to {out}")

    obs = make_inputs(variant, gen, stats)
    rec = Recorder(policy)
    batch, normalized, actions = run_once(policy, pre, post, obs, NOISE_SEED)
    data = rec.data
    noise = data["sampled_noise"]
    steps = config.num_inference_steps
    assert len(data["v"]) == steps, len(data["v"])
    dt = -1.0 / steps
    final_x = data["x"][-1] + dt * data["v"][-1]

    # the same noise passed explicitly gives the same chunk
    rec.reset()
    _, normalized2, _ = run_once(policy, pre, post, obs, NOISE_SEED + 1, noise=noise.clone())
    assert torch.equal(normalized, normalized2), "explicit noise differs from sampled noise"

    # select_action from the same RNG state returns the chunk's first action
    rec.reset()
    policy.reset()
    torch.manual_seed(NOISE_SEED)
    first = post(policy.select_action(pre(dict(obs))))
    assert torch.allclose(first, actions[:, 0], atol=0, rtol=0), "select_action != chunk[:, 0]"

    tensors = {f"input.{k}": v.contiguous() for k, v in obs.items() if isinstance(v, torch.Tensor)}
    for k, v in batch.items():  # the preprocessed batch; camera images pass through it unchanged
        if isinstance(v, torch.Tensor) and not (k in obs and torch.equal(v, obs[k])):
            tensors[f"batch.{k}"] = v.clone().contiguous()
    passthrough = sorted(k for k, v in batch.items() if k in obs and isinstance(v, torch.Tensor)
                         and torch.equal(v, obs[k]))
    for i, (img, m) in enumerate(zip(data["images"], data["img_masks"])):
        tensors[f"model.image.{i}"] = img.contiguous()
        tensors[f"model.image_mask.{i}"] = m.contiguous()
    embs, pad, att = data["prefix"]
    tensors.update({"prefix.embs": embs.contiguous(), "prefix.pad_masks": pad.contiguous(),
                    "prefix.att_masks": att.contiguous()})
    tensors["flow.noise"] = noise.contiguous()
    tensors["flow.x"] = torch.stack(data["x"] + [final_x]).contiguous()
    tensors["flow.t"] = torch.stack(data["t"]).contiguous()
    tensors["flow.v"] = torch.stack(data["v"]).contiguous()
    tensors["output.actions_normalized"] = normalized.contiguous()
    tensors["output.actions"] = actions.contiguous()
    tensors["output.select_action"] = first.contiguous()
    from safetensors.torch import save_file
    save_file(tensors, str(out / "reference.safetensors"))

    sens = sensitivity(policy, pre, post, obs, noise, actions, variant)
    meta = {
        "what": f"LeRobot {LEROBOT_VERSION} {policy_cls.__name__} with random weights, recorded by "
                "scripts/reference_fixtures/lerobot.py (golden fixture; see docs/pi0.md)",
        "variant": variant, "policy_type": config.type, "lerobot": LEROBOT_VERSION,
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "seed": SEED, "noise_seed": NOISE_SEED, "tasks": TASKS, "batch": BATCH,
        "cameras": {k: list(v) for k, v in spec["cameras"].items()},
        "empty_cameras": config.empty_cameras, "state_dim": STATE_DIM, "action_dim": ACTION_DIM,
        "num_inference_steps": steps, "dt": dt, "flow_direction": "t=1 (noise) -> t=0 (actions), x += dt*v, dt=-1/steps",
        "normalization": spec["norm"], "chunk_size": config.chunk_size,
        "tokenizer_max_length": config.tokenizer_max_length,
        "calls": "actions = postprocessor(policy.predict_action_chunk(preprocessor(observation))); "
                 "select_action checked equal to actions[:, 0] under the same RNG seed",
        "batch_equal_to_input": passthrough,
        "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
                    for k, v in sorted(tensors.items())},
        "sensitivity": sens,
    }
    (out / "reference.json").write_text(json.dumps(meta, indent=2) + "\n")
    check_reload(variant, out, obs, noise, actions)
    record_rtc(out)
    return meta


def sensitivity(policy, pre, post, obs, noise, actions, variant) -> dict:
    """Largest change of the action chunk when one input changes: each must matter."""
    out = {}

    def delta(obs2, noise2=noise):
        _, _, a2 = run_once(policy, pre, post, obs2, NOISE_SEED, noise=noise2.clone())
        return float((a2 - actions).abs().max())

    for cam in VARIANTS[variant]["cameras"]:
        o = dict(obs)
        o[cam] = (obs[cam] * 0.8 + 0.1)
        out[cam] = delta(o)
    o = dict(obs)
    o["observation.state"] = obs["observation.state"] + 0.3
    out["observation.state"] = delta(o)
    o = dict(obs)
    o["task"] = ["put the blue block on the left", "close the door"]
    out["task"] = delta(o)
    out["noise"] = delta(obs, noise + 0.1)
    for k, v in out.items():
        assert v > 1e-3, f"{variant}: actions do not depend on {k} ({v})"
    return out


def check_reload(variant: str, out: Path, obs, noise, actions) -> None:
    """The saved directory alone (plus the overrides) reproduces the recorded actions through LeRobot."""
    policy, pre, post = load_fixture(out)
    _, _, again = run_once(policy, pre, post, obs, NOISE_SEED, noise=noise.clone())
    diff = float((again - actions).abs().max())
    if diff != 0.0:
        raise SystemExit(f"{variant}: reloaded directory gives different actions (max abs diff {diff})")
    log(f"{variant}: reloaded from {out} with LeRobot: identical actions")


def record_rtc(path: Path) -> dict:
    """LeRobot's own RTC on the fixture as saved: rtc.safetensors + rtc.json beside it (nothing else written)."""
    from lerobot.configs import RTCAttentionSchedule
    from lerobot.policies.rtc.configuration_rtc import RTCConfig
    from lerobot.policies.rtc.modeling_rtc import RTCProcessor
    from safetensors.torch import load_file, save_file

    policy, pre, post = load_fixture(path)
    ref = load_file(str(path / "reference.safetensors"))
    meta = json.loads((path / "reference.json").read_text())
    obs = {k[len("input."):]: v for k, v in ref.items() if k.startswith("input.")}
    obs["task"] = list(meta["tasks"])
    prev = ref["output.actions_normalized"]  # (B, T, action_dim): the previous chunk
    _, again, _ = run_once(policy, pre, post, obs, NOISE_SEED, noise=ref["flow.noise"].clone())
    if not torch.equal(again, prev):
        raise SystemExit(f"{path}: the saved policy no longer gives the recorded chunk; rebuild the fixture first")
    noise = torch.randn(ref["flow.noise"].shape, generator=torch.Generator().manual_seed(RTC_NOISE_SEED))
    tensors = {"noise": noise.contiguous()}
    _, free, free_actions = run_once(policy, pre, post, obs, NOISE_SEED, noise=noise.clone())
    tensors["unguided.actions_normalized"], tensors["unguided.actions"] = free.contiguous(), free_actions.contiguous()
    cases = {}
    for name, (schedule, d, h, w, executed) in RTC_CASES.items():
        policy.config.rtc_config = RTCConfig(enabled=True, prefix_attention_schedule=RTCAttentionSchedule[schedule],
                                             max_guidance_weight=w, execution_horizon=h)
        policy.init_rtc_processor()
        leftover = prev[:, executed:].clone().contiguous()
        batch = pre(dict(obs))
        runs = [policy.predict_action_chunk(batch, noise=noise.clone(), inference_delay=d,
                                            prev_chunk_left_over=leftover.clone(), execution_horizon=h)
                for _ in range(2)]
        if not torch.equal(runs[0], runs[1]):
            raise SystemExit(f"{path}: RTC case {name} is not deterministic")
        guided = runs[0]
        # guidance must matter, and pull the first d actions towards the leftover
        near, far = ((a[:, :d] - leftover[:, :d]).abs().max().item() for a in (guided, free))
        if not near < 0.5 * far:
            raise SystemExit(f"{path}: RTC case {name}: guided {near:.3g} vs unguided {far:.3g} from the leftover")
        tensors[f"{name}.leftover"] = leftover
        tensors[f"{name}.actions_normalized"] = guided.contiguous()
        tensors[f"{name}.actions"] = post(guided).contiguous()
        cases[name] = {"schedule": schedule, "inference_delay": d, "execution_horizon": h, "max_guidance_weight": w,
                       "executed": executed, "leftover_length": int(leftover.shape[1]),
                       "max_abs_first_d_to_leftover": {"guided": near, "unguided": far}}
        log(f"{path.name}: RTC {name}: first {d} actions within {near:.3g} of the leftover (unguided {far:.3g})")
    policy.config.rtc_config = None
    policy.init_rtc_processor()
    weights = []
    for schedule in RTCAttentionSchedule:
        proc = RTCProcessor(RTCConfig(enabled=True, prefix_attention_schedule=schedule))
        for d, h, t in RTC_WEIGHT_GRID:
            weights.append({"schedule": schedule.value, "inference_delay": d, "execution_horizon": h, "total": t,
                            "weights": proc.get_prefix_weights(d, h, t).tolist()})
    save_file(tensors, str(path / "rtc.safetensors"))
    rtc_meta = {
        "what": f"LeRobot {LEROBOT_VERSION} real-time chunking on this fixture, recorded by "
                "scripts/reference_fixtures/lerobot.py (record_rtc; see docs/pi0.md)",
        "lerobot": LEROBOT_VERSION, "torch": torch.__version__, "noise_seed": RTC_NOISE_SEED,
        "calls": "policy.config.rtc_config = RTCConfig(enabled=True, prefix_attention_schedule=S, "
                 "max_guidance_weight=W, execution_horizon=H); policy.init_rtc_processor(); "
                 "predict_action_chunk(preprocessor(observation), noise=noise, inference_delay=d, "
                 "prev_chunk_left_over=<case>.leftover, execution_horizon=H); <case>.actions = postprocessor(...)",
        "leftover": "reference output.actions_normalized[:, executed:] (the recorded chunk is the previous one)",
        "cases": cases, "prefix_weights": weights,
        "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
                    for k, v in sorted(tensors.items())},
    }
    (path / "rtc.json").write_text(json.dumps(rtc_meta, indent=2) + "\n")
    return rtc_meta


def load_fixture(path: Path):
    from lerobot.policies.pi0.modeling_pi0 import PI0Policy
    from lerobot.policies.pi05.modeling_pi05 import PI05Policy
    from lerobot.processor import PolicyProcessorPipeline
    from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action

    overrides = json.loads((path / "lerobot_overrides.json").read_text())
    apply_overrides(overrides, path)
    kind = json.loads((path / "config.json").read_text())["type"]
    cls = {"pi0": PI0Policy, "pi05": PI05Policy}[kind]
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):  # from_pretrained prints a banner
        policy = cls.from_pretrained(str(path), strict=True)
    policy.eval()
    pre = PolicyProcessorPipeline.from_pretrained(str(path), config_filename="policy_preprocessor.json")
    post = PolicyProcessorPipeline.from_pretrained(str(path), config_filename="policy_postprocessor.json",
                                                   to_transition=policy_action_to_transition,
                                                   to_output=transition_to_policy_action)
    return policy, pre, post


# ----------------------------------------------------------------------------------------------
# bench mode
# ----------------------------------------------------------------------------------------------
def time_fixture(path: Path, repeats: int, threads: int | None) -> dict:
    from safetensors.torch import load_file

    if threads:
        torch.set_num_threads(threads)
    policy, pre, post = load_fixture(path)
    ref = load_file(str(path / "reference.safetensors"))
    meta = json.loads((path / "reference.json").read_text())
    obs = {k[len("input."):]: v for k, v in ref.items() if k.startswith("input.")}
    obs["task"] = list(meta["tasks"])
    noise = ref["flow.noise"]
    batch = pre(dict(obs))
    with torch.no_grad():
        policy.predict_action_chunk(batch, noise=noise.clone())  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            normalized = policy.predict_action_chunk(batch, noise=noise.clone())
            times.append(time.perf_counter() - t0)
    actions = post(normalized)
    return {
        "implementation": f"lerobot {LEROBOT_VERSION} {type(policy).__name__}.predict_action_chunk",
        "fixture": str(path), "variant": meta["variant"], "batch": meta["batch"],
        "chunk_size": meta["chunk_size"], "num_inference_steps": meta["num_inference_steps"],
        "torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": repeats,
        "ms_median": 1000 * float(np.median(times)), "ms_min": 1000 * float(np.min(times)),
        "ms_all": [round(1000 * t, 3) for t in times],
        "max_abs_diff_vs_fixture": float((actions - ref["output.actions"]).abs().max()),
        "loadavg_1min": os.getloadavg()[0], "cpus": os.cpu_count(),  # the machine may be shared
    }


def time_full_size(variant: str, device: str, repeats: int, batch: int, dtype: str) -> dict:
    """LeRobot at its real sizes (PaliGemma 3B + 300M expert), random weights, 3 cameras of 224x224,
    48 prompt tokens, 50 actions, 10 steps: the issue's GPU anchor, on LeRobot's own code. The batch is
    built directly (random pixels and token ids): the processors and tokenizer play no part in the timing."""
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.pi0.configuration_pi0 import PI0Config
    from lerobot.policies.pi0.modeling_pi0 import PI0Policy
    from lerobot.policies.pi05.configuration_pi05 import PI05Config
    from lerobot.policies.pi05.modeling_pi05 import PI05Policy

    cams = [f"observation.images.cam{i}" for i in range(3)]
    inputs = {c: PolicyFeature(type=FeatureType.VISUAL, shape=(3, 224, 224)) for c in cams}
    inputs["observation.state"] = PolicyFeature(type=FeatureType.STATE, shape=(32,))
    outputs = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(32,))}
    cfg_cls, policy_cls = (PI0Config, PI0Policy) if variant == "pi0" else (PI05Config, PI05Policy)
    config = cfg_cls(input_features=inputs, output_features=outputs, device=device, dtype=dtype,
                     tokenizer_max_length=48)
    t0 = time.perf_counter()
    with torch.device(device):  # random init where the weights will live
        policy = policy_cls(config)
    policy.eval()
    build_s = time.perf_counter() - t0
    gen = torch.Generator(device=device).manual_seed(0)
    data = {c: torch.rand((batch, 3, 224, 224), generator=gen, device=device) for c in cams}
    data["observation.state"] = torch.randn((batch, 32), generator=gen, device=device)
    data["observation.language.tokens"] = torch.randint(0, 257152, (batch, 48), generator=gen, device=device)
    data["observation.language.attention_mask"] = torch.ones((batch, 48), dtype=torch.bool, device=device)
    noise = torch.randn((batch, 50, 32), generator=gen, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    with torch.no_grad():
        for i in range(repeats + 2):  # two warm-ups
            sync()
            t0 = time.perf_counter()
            actions = policy.predict_action_chunk(data, noise=noise.clone())
            sync()
            if i >= 2:
                times.append(time.perf_counter() - t0)
    return {
        "implementation": f"lerobot {LEROBOT_VERSION} {policy_cls.__name__}.predict_action_chunk (eager)",
        "variant": variant, "sizes": "gemma_2b + gemma_300m + SigLIP So400m/14 (real sizes, random weights)",
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "dtype": dtype, "batch": batch, "cameras": 3, "image": 224, "prompt_tokens": 48,
        "chunk_size": config.chunk_size, "num_inference_steps": config.num_inference_steps,
        "parameters": sum(p.numel() for p in policy.parameters()), "build_s": build_s,
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "repeats": repeats, "ms_median": 1000 * float(np.median(times)), "ms_min": 1000 * float(np.min(times)),
        "ms_all": [round(1000 * t, 3) for t in times], "finite": bool(torch.isfinite(actions).all()),
        "peak_gpu_mem_gb": torch.cuda.max_memory_allocated() / 1e9 if device.startswith("cuda") else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=["pi0", "pi05", "all"], default="all")
    ap.add_argument("--out", type=Path, default=ROOT / "test" / "fixtures", help="parent folder of the fixtures")
    ap.add_argument("--time", type=Path, metavar="DIR", help="bench mode: time predict_action_chunk on DIR")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch threads in bench mode (default: torch's)")
    ap.add_argument("--time-full-size", choices=["pi0", "pi05"], metavar="VARIANT",
                    help="bench mode: time LeRobot's real-size VARIANT with random weights (see time_full_size)")
    ap.add_argument("--device", default="cuda", help="--time-full-size only (default cuda)")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="--time-full-size only")
    ap.add_argument("--batch", type=int, default=1, help="--time-full-size only")
    ap.add_argument("--rtc-only", action="store_true",
                    help="only record the RTC cases (rtc.safetensors, rtc.json) of the existing fixtures")
    args = ap.parse_args()
    if args.time_full_size:
        print(json.dumps(time_full_size(args.time_full_size, args.device, args.repeats, args.batch, args.dtype)))
        return 0
    if args.time:
        print(json.dumps(time_fixture(args.time, args.repeats, args.threads)))
        return 0
    torch.use_deterministic_algorithms(True)
    variants = ["pi0", "pi05"] if args.variant == "all" else [args.variant]
    if args.rtc_only:
        for v in variants:
            record_rtc(args.out / VARIANTS[v]["dir"])
        return 0
    for v in variants:
        meta = build_variant(v, args.out)
        size = sum(f.stat().st_size for f in (args.out / VARIANTS[v]["dir"]).iterdir())
        log(f"{v}: {size / 1e6:.2f} MB; sensitivity {json.dumps(meta['sensitivity'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
