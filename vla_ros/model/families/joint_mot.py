"""The `joint_mot` architecture: pi0 and pi0.5 (PaliGemma prefix + Gemma action expert sharing
each layer's attention), as LeRobot 0.6.1 defines them (docs/pi0.md).

    model.paligemma_with_expert.paligemma    SigLIP + projector + Gemma language model (prefix)
    model.paligemma_with_expert.gemma_expert the action expert's Gemma layers (suffix)
    model.action_in_proj / action_out_proj   noisy actions in, velocity out
    pi0:   model.state_proj, model.action_time_mlp_{in,out}  (state token; time fused with actions)
    pi0.5: model.time_mlp_{in,out}           (time -> adaptive RMSNorm condition of the expert)

Module names are LeRobot's, so its `model.safetensors` loads by name
(`vla_ros.model.lerobot_checkpoint`). Joint attention never lets an earlier block read a later
one, so it runs as: the prefix (real image and language tokens, one bidirectional block, positions
0..L-1) once into the runtime's K/V cache; for pi0 the state token (its own block, the expert's
weights) appended to the cache once per tick, since it never sees the actions; then each flow step
only the action tokens, against the cache with no copy. Padding tokens (language padding, LeRobot's
empty cameras) are left out of the cache instead of being masked: no real token attends to them and
positions count only real tokens, so the result is the same.

n experts (InternVLA-A1's understanding / generation / action experts) are a config of the same
code: `JointMoTSpec.middle_experts` adds streams between the prefix and the actions, each its own
Gemma stack over learned input tokens, sharing depth, heads and head_dim; every stream but the
action tokens is run once per tick, in block order, and appended to the cache. Only Gemma layers
exist so far (InternVLA-A1's Qwen2.5 layers and its real generation-expert inputs do not).

Flow runs from noise at t=1 to actions at t=0 (config `flow.direction = data_to_noise`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vla_ros.model.config import VLAConfig
from vla_ros.model.families import register_family
from vla_ros.model.family import DecodedActions, ImageEmbedding, PrefillResult
from vla_ros.model.flow_matching import FlowSchedule, flow_schedule
from vla_ros.model.gemma_layer import GemmaDecoderLayer, GemmaLayer, GemmaNorm, gemma_rope
from vla_ros.model.siglip import SiglipVisionModel

VARIANTS = ("pi0", "pi05")
NORMALIZATIONS = ("MEAN_STD", "QUANTILES")


@dataclass(frozen=True)
class GemmaSize:
    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    num_kv_heads: int
    head_dim: int


@dataclass(frozen=True)
class VisionSize:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    patch_size: int


@dataclass
class JointMoTSpec:
    """Everything about a pi0 / pi0.5 checkpoint beyond the generic VLAConfig."""

    variant: str  # pi0 | pi05
    vlm: GemmaSize
    expert: GemmaSize
    vision: VisionSize
    vocab_size: int
    resolution: int  # square image side
    cameras: tuple[str, ...]  # the real cameras, in config order (empty cameras are not fed)
    state_dim: int
    action_dim: int
    max_state_dim: int
    max_action_dim: int
    chunk_size: int
    min_period: float
    max_period: float
    tokenizer_max_length: int
    normalization: str  # MEAN_STD | QUANTILES, for state and action
    eps: float
    state_stats: dict[str, torch.Tensor] = field(default_factory=dict)  # mean/std or q01/q99 (state_dim,)
    action_stats: dict[str, torch.Tensor] = field(default_factory=dict)  # (action_dim,)
    action_names: tuple[str, ...] = ()
    # Experts between the prefix and the action expert (InternVLA-A1's generation expert): each
    # runs `tokens` learned input tokens as a block of its own, once per tick, after the prefix.
    middle_experts: tuple[GemmaSize, ...] = ()
    middle_tokens: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"joint_mot variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if len(self.middle_experts) != len(self.middle_tokens):
            raise ValueError("middle_experts and middle_tokens must have one entry per expert")
        for key in ("depth", "num_heads", "num_kv_heads", "head_dim"):
            if any(getattr(e, key) != getattr(self.vlm, key) for e in (self.expert, *self.middle_experts)):
                raise ValueError(f"every expert must share the prefix's {key} (joint attention)")


def resize_with_pad(img: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, h, w) in [0, 1] -> (N, 3, size, size): LeRobot's resize_with_pad_torch (bilinear,
    no antialias, aspect kept, clamped, zero padding centred, odd pixel bottom / right)."""
    h, w = img.shape[-2:]
    if (h, w) == (size, size):
        return img
    ratio = max(w / size, h / size)
    rh, rw = int(h / ratio), int(w / ratio)
    out = F.interpolate(img, size=(rh, rw), mode="bilinear", align_corners=False).clamp(0.0, 1.0)
    ph, pw = size - rh, size - rw
    return F.pad(out, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=0.0)


def sinusoidal(t: torch.Tensor, width: int, min_period: float, max_period: float) -> torch.Tensor:
    """(N,) flow times -> (N, width) float32, computed in float64 like LeRobot."""
    frac = torch.linspace(0.0, 1.0, width // 2, dtype=torch.float64, device=t.device)
    period = min_period * (max_period / min_period) ** frac
    s = (2 * math.pi / period)[None] * t[:, None].double()
    return torch.cat([s.sin(), s.cos()], dim=1).float()


def _sdpa_gqa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, scale=scale, enable_gqa=True)


def _gemma_model(size: GemmaSize, adaptive: bool) -> nn.Module:
    m = nn.Module()
    m.layers = nn.ModuleList(GemmaDecoderLayer(size.width, size.mlp_dim, size.num_heads, size.num_kv_heads,
                                               size.head_dim, adaptive) for _ in range(size.depth))
    m.norm = GemmaNorm(size.width, adaptive)
    return m


@register_family("joint_mot")
class JointMoT(nn.Module):
    def __init__(self, config: VLAConfig, spec: JointMoTSpec) -> None:
        super().__init__()
        if not isinstance(spec, JointMoTSpec):
            raise TypeError("joint_mot is built from a JointMoTSpec (see vla_ros.model.lerobot_checkpoint)")
        self.config, self.spec = config, spec
        s, v = spec, spec.vision
        pi05 = s.variant == "pi05"
        pg = nn.Module()
        pg.model = nn.Module()
        pg.model.vision_tower = nn.Module()
        pg.model.vision_tower.vision_model = SiglipVisionModel(v.hidden_size, v.num_hidden_layers, v.intermediate_size,
                                                               v.num_attention_heads, v.patch_size, s.resolution)
        pg.model.multi_modal_projector = nn.Module()
        pg.model.multi_modal_projector.linear = nn.Linear(v.hidden_size, s.vlm.width)
        pg.model.language_model = _gemma_model(s.vlm, adaptive=False)
        pg.model.language_model.embed_tokens = nn.Embedding(s.vocab_size, s.vlm.width)
        expert = nn.Module()
        expert.model = _gemma_model(s.expert, adaptive=pi05)
        self.model = nn.Module()
        self.model.paligemma_with_expert = nn.Module()
        self.model.paligemma_with_expert.paligemma = pg
        self.model.paligemma_with_expert.gemma_expert = expert
        w = s.expert.width
        if s.middle_experts:  # n experts: the streams between prefix and actions
            self.model.middle_experts = nn.ModuleList()
            for size, tokens in zip(s.middle_experts, s.middle_tokens):
                e = nn.Module()
                e.model = _gemma_model(size, adaptive=False)
                e.queries = nn.Parameter(torch.randn(tokens, size.width) * 0.02)
                self.model.middle_experts.append(e)
        self.model.action_in_proj = nn.Linear(s.max_action_dim, w)
        self.model.action_out_proj = nn.Linear(w, s.max_action_dim)
        if pi05:
            self.model.time_mlp_in = nn.Linear(w, w)
            self.model.time_mlp_out = nn.Linear(w, w)
        else:
            self.model.state_proj = nn.Linear(s.max_state_dim, w)
            self.model.action_time_mlp_in = nn.Linear(2 * w, w)
            self.model.action_time_mlp_out = nn.Linear(w, w)
        self._cond: torch.Tensor | None = None  # pi0.5: this flow step's adaptive-norm condition

    # ------------------------------------------------------------------ parts
    @property
    def _vlm(self) -> nn.Module:
        return self.model.paligemma_with_expert.paligemma.model

    @property
    def _expert(self) -> nn.Module:
        return self.model.paligemma_with_expert.gemma_expert.model

    def _layers(self, model: nn.Module, size: GemmaSize, cond: bool) -> list[GemmaLayer]:
        get = (lambda: self._cond) if cond else (lambda: None)
        return [GemmaLayer(m, size.num_heads, size.num_kv_heads, size.head_dim, get) for m in model.layers]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def robot_action_dim(self) -> int:
        """Physical actions per step (the joints it commands; the raw actions are padded beyond)."""
        return self.spec.action_dim

    @property
    def robot_state_dim(self) -> int:
        """This family is fed a robot state and a task instruction (not an ego history)."""
        return self.spec.state_dim

    def schedule(self, steps: int | None = None) -> FlowSchedule:
        return flow_schedule(self.config.flow, steps)

    # ------------------------------------------------------------------ prefix
    def cache_shape(self) -> tuple[int, int, int]:
        s = self.spec.vlm
        return s.depth, s.num_kv_heads, s.head_dim

    @property
    def image_size_hw(self) -> tuple[int, int]:
        return self.spec.resolution, self.spec.resolution

    def encode_images(self, images: np.ndarray, device: torch.device, dtype: torch.dtype) -> list[ImageEmbedding]:
        """uint8 (N, H, W, 3), or float in [0, 1] as LeRobot takes cameras -> one embedding each."""
        return self.image_embeddings(self.image_tokens(self.preprocess_images(images, device).to(dtype)))

    def preprocess_images(self, images: np.ndarray, device: torch.device) -> torch.Tensor:
        """uint8 (N, H, W, 3) or float in [0, 1] -> (N, 3, R, R) float32 in [-1, 1], resized with pad."""
        x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return resize_with_pad(x, self.spec.resolution) * 2.0 - 1.0

    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, R, R) in [-1, 1] -> (N, tokens, width): SigLIP, then the projector (the vision graph)."""
        vm = self._vlm
        return vm.multi_modal_projector.linear(vm.vision_tower.vision_model(pixels))

    def image_embeddings(self, tokens: torch.Tensor) -> list[ImageEmbedding]:
        g = self.spec.resolution // self.spec.vision.patch_size
        return [ImageEmbedding(tokens=t, deepstack=(), grid_thw=(1, g, g)) for t in tokens]

    def normalize_state(self, state: torch.Tensor) -> torch.Tensor:
        st, eps = self.spec.state_stats, self.spec.eps
        if self.spec.normalization == "MEAN_STD":
            return (state - st["mean"]) / (st["std"] + eps)
        den = st["q99"] - st["q01"]
        den = torch.where(den == 0, torch.full_like(den, eps), den)
        return 2.0 * (state - st["q01"]) / den - 1.0

    def prompt(self, task: str, state_norm: torch.Tensor) -> str:
        """The text LeRobot's processors tokenize (pi0: task + newline; pi0.5: task and binned state)."""
        if self.spec.variant == "pi0":
            return task if task.endswith("\n") else task + "\n"
        clean = task.strip().replace("_", " ").replace("\n", " ")
        bins = np.digitize(state_norm.numpy(), bins=np.linspace(-1, 1, 256 + 1)[:-1]) - 1
        return f"Task: {clean}, State: {' '.join(map(str, bins.tolist()))};\nAction: "

    def prefix_plan(self, embeds: list[ImageEmbedding], history_xyz: np.ndarray, tokenizer: Any, *,
                    state: np.ndarray, task: str) -> SimpleNamespace:
        state_norm = self.normalize_state(torch.as_tensor(state, dtype=torch.float32))
        prompt = self.prompt(task, state_norm)
        # LeRobot cuts the prompt at its token budget; how much was cut is reported, not hidden
        full = len(tokenizer.encode_prompt(prompt, 1 << 30))
        ids = tokenizer.encode_prompt(prompt, self.spec.tokenizer_max_length)
        images = sum(e.tokens.shape[0] for e in embeds)
        extra = sum(self.spec.middle_tokens) + (1 if self.spec.variant == "pi0" else 0)  # cached after the prefix
        return SimpleNamespace(ids=ids, state_norm=state_norm, images=images, length=images + len(ids) + extra,
                               tokens_dropped=full - len(ids))

    def _cache_stream(self, model: nn.Module, size: GemmaSize, h: torch.Tensor, start: Any, cache: Any,
                      attend: Any) -> None:
        """One stream through its own expert's layers, as one block: it attends to everything cached
        before it and to itself; its K/V are appended to the cache (positions start, start + 1, ...).
        Its output is never read, so the last layer stops after its K/V."""
        cos, sin = gemma_rope(torch.arange(start, start + h.shape[1], device=h.device), size.head_dim, h.dtype)
        layers = self._layers(model, size, cond=False)
        for i, layer in enumerate(layers):
            q, k, v = layer.qkv(h, cos[None, :, None], sin[None, :, None])
            keys, values = cache.update(k, v, i)  # views of everything cached so far, this stream included
            if i + 1 < len(layers):
                h = layer.finish(h, attend(q, keys, values, layer.scaling).transpose(1, 2).flatten(2))

    def prefill(self, plan: SimpleNamespace, embeds: list[ImageEmbedding], cache: Any) -> PrefillResult:
        """Every stream but the action tokens, in block order, into the cache: the prefix (images,
        language), the middle experts' tokens, and pi0's state token (never sees the actions)."""
        device = self.model.action_in_proj.weight.device
        ids = torch.tensor(plan.ids, dtype=torch.long, device=device)
        image = torch.cat([e.tokens for e in embeds])[None]
        state = plan.state_norm.to(device) if self.spec.variant == "pi0" else None
        return PrefillResult(logits=None, next_position=self.prefill_streams(image, ids, state, cache))

    def prefill_streams(self, image_tokens: torch.Tensor, ids: torch.Tensor, state_norm: torch.Tensor | None,
                        cache: Any, attend: Any = None) -> Any:
        """The prefill on tensors (the torch backend's and the ONNX prefill graph's): image tokens
        (1, Ni, W), prompt ids (Nl,), pi0's normalized state (state_dim,) (None for pi0.5) into
        `cache` (`update(k, v, layer)` -> everything cached so far); `attend(q, keys, values,
        scale)` -> (1, H, N, hd) (default: SDPA with grouped KV heads). -> the next position."""
        attend = attend or _sdpa_gqa
        vm = self._vlm
        p = vm.language_model.embed_tokens.weight
        lang = vm.language_model.embed_tokens(ids) * torch.tensor(self.spec.vlm.width ** 0.5, dtype=p.dtype)
        h = torch.cat([image_tokens.to(p.dtype), lang[None]], dim=1)
        self._cache_stream(vm.language_model, self.spec.vlm, h, 0, cache, attend)
        n = h.shape[1]
        for e, size in zip(getattr(self.model, "middle_experts", ()), self.spec.middle_experts):
            self._cache_stream(e.model, size, e.queries[None], n, cache, attend)
            n += e.queries.shape[0]
        if self.spec.variant == "pi0":
            if state_norm is None:
                raise ValueError("pi0's prefill needs the normalized state")
            state = F.pad(state_norm.to(p.dtype), (0, self.spec.max_state_dim - self.spec.state_dim))
            self._cache_stream(self._expert, self.spec.expert, self.model.state_proj(state)[None, None], n, cache,
                               attend)
            n += 1
        return n

    def decode_token(self, token: int, length: int, position: int, cache: Any) -> torch.Tensor:
        raise NotImplementedError("joint_mot has no text decoder")

    def text_logit_mask(self, tokenizer: Any) -> None:
        return None

    # ------------------------------------------------------------------ suffix
    @property
    def action_shape(self) -> tuple[int, int]:
        return self.spec.chunk_size, self.spec.max_action_dim

    def time_terms(self, times: torch.Tensor) -> torch.Tensor:
        """pi0: the sinusoidal time embedding; pi0.5: the adaptive-norm condition (steps, width)."""
        p = self.model.action_in_proj.weight
        e = sinusoidal(times.float(), self.spec.expert.width, self.spec.min_period, self.spec.max_period).to(p.dtype)
        if self.spec.variant == "pi0":
            return e
        return F.silu(self.model.time_mlp_out(F.silu(self.model.time_mlp_in(e))))

    def embed_suffix(self, x: torch.Tensor, time_term: torch.Tensor) -> torch.Tensor:
        a = self.model.action_in_proj(x)
        if self.spec.variant == "pi05":
            self._cond = time_term  # read by every expert norm of this step
            return a
        te = time_term.expand(*a.shape[:-1], -1)
        return self.model.action_time_mlp_out(F.silu(self.model.action_time_mlp_in(torch.cat([a, te], dim=-1))))

    def suffix_layers(self) -> list[GemmaLayer]:
        return self._layers(self._expert, self.spec.expert, cond=self.spec.variant == "pi05")

    def suffix_norm(self, h: torch.Tensor) -> torch.Tensor:
        return self._expert.norm(h, self._cond if self.spec.variant == "pi05" else None)[0]

    def suffix_rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return gemma_rope(positions, self.spec.expert.head_dim, dtype)

    def suffix_mask(self, t: int, device: torch.device) -> None:
        return None  # action tokens see each other (one block) and everything cached

    def decode_suffix(self, h: torch.Tensor) -> torch.Tensor:
        return self.model.action_out_proj(h)

    # ------------------------------------------------------------------ output
    def unnormalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        st = self.spec.action_stats
        a = actions[..., :self.spec.action_dim].float()
        if self.spec.normalization == "MEAN_STD":
            return a * st["std"] + st["mean"]
        return (a + 1.0) * (st["q99"] - st["q01"]) / 2.0 + st["q01"]

    def decode_actions(self, actions: torch.Tensor, history_xyz: torch.Tensor,
                       history_rot: torch.Tensor) -> DecodedActions:
        names = self.spec.action_names or tuple(f"action_{i}" for i in range(self.spec.action_dim))
        return DecodedActions(actions=self.unnormalize_actions(actions).double(), names=names,
                              units=("",) * self.spec.action_dim)
