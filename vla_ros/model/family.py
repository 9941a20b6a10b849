"""The seam between a model family and the runtime: what `Policy` asks of a network.

A family is a `torch.nn.Module` registered under its architecture name (see
`vla_ros.model.families`). The runtime owns what every family shares: the preallocated K/V
buffers and the transformers `Cache` over them, the vision-embedding cache, the flow schedule and
its direction, the denoising loop (eager or one CUDA graph), samples sharing one prefix, timings
and the backends. The family owns the rest:

    prefix      encode_images -> prefix_plan -> prefill (K/V into the runtime's cache); optional
                reasoning decode on the same cache (decode_token, text_logit_mask)
    suffix      time_terms (per flow step, precomputed), embed_suffix (noisy actions + time),
                suffix_layers (each a `Qwen3Layer`-like object: qkv / finish around attention),
                suffix_norm, suffix_rope, suffix_mask (the attention pattern among action tokens;
                every action token sees the whole prefix), decode_suffix (hidden -> velocity)
    output      decode_actions: the model's normalized actions -> a trajectory in the t0 frame
                or an action chunk in physical units, with each dimension's name and unit

`vla_ros/model/families/kv_expert.py` is the reference implementation; the test suite's toy
family (`test/test_model_family.py`) shows a second one in one file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from vla_ros.model.config import VLAConfig


@dataclass(frozen=True)
class ImageEmbedding:
    """One image encoded by a family's vision tower (cached per camera and stamp by the runtime)."""

    tokens: torch.Tensor  # (n, D) vision tokens
    deepstack: tuple[torch.Tensor, ...]  # extra per-layer features (n, D) each; () if none
    grid_thw: tuple[int, int, int]


@dataclass(frozen=True)
class PrefillResult:
    logits: torch.Tensor | None  # (1, V) float32 at the last prefix token, None for families without text
    next_position: int  # rotary position of the first action token


@dataclass(frozen=True)
class DecodedActions:
    """Actions of S samples in physical units, and a trajectory when the family drives a path.

    actions (S, T, A) float64 with `names` / `units` per dimension; xyz (S, T, 3) and rot
    (S, T, 3, 3) float64 in the t0 ego frame, or None for an action chunk. within_bounds (S,)
    bool: the sample's physical actions lie inside the family's bounds (None: no bounds); a
    family that does not clip reports here instead of changing the actions."""

    actions: torch.Tensor
    names: tuple[str, ...]
    units: tuple[str, ...]
    xyz: torch.Tensor | None = None
    rot: torch.Tensor | None = None
    within_bounds: torch.Tensor | None = None


class Family(Protocol):
    architecture: ClassVar[str]
    config: VLAConfig

    # ---------------------------------------------------------------- prefix
    def cache_shape(self) -> tuple[int, int, int]:
        """(layers, kv_heads, head_dim) of the prefix cache the suffix layers read, layer by layer."""

    @property
    def image_size_hw(self) -> tuple[int, int]:
        """Frames decoded to this size are not resized again."""

    def encode_images(self, images: np.ndarray, device: torch.device, dtype: torch.dtype) -> list[ImageEmbedding]:
        """uint8 (N, H, W, 3) -> one embedding per image (each image independent of the others)."""

    def prefix_plan(self, embeds: list[ImageEmbedding], history_xyz: np.ndarray, tokenizer: Any) -> Any:
        """Everything prefill needs, with `.length` (prefix tokens), so buffers are sized first.
        A family with an int `robot_state_dim` attribute (pi0 / pi0.5: `joint_mot`) takes no ego
        history; the Policy then validates PolicyInputs.state / .task and passes them as
        `prefix_plan(embeds, history_xyz, tokenizer, state=..., task=...)`. A family whose
        config's prompt names the cameras (`prompt.needs_camera_ids`) or takes a navigation
        instruction (`prompt.navigation`) also gets `camera_ids=` / `navigation=`."""

    def prefill(self, plan: Any, embeds: list[ImageEmbedding], cache: Any) -> PrefillResult:
        """Write the prefix K/V through `cache` (a transformers Cache over the runtime's buffers)."""

    def decode_token(self, token: int, length: int, position: int, cache: Any) -> torch.Tensor:
        """Reasoning: append one token at cache slot `length`, rotary `position` -> logits (1, V)."""

    def text_logit_mask(self, tokenizer: Any) -> torch.Tensor | None:
        """(V,) bool: tokens never decoded as text (None: this family has no text decoder)."""

    # ---------------------------------------------------------------- suffix
    @property
    def action_shape(self) -> tuple[int, int]:
        """(T, A): action tokens per sample and dimensions per action."""

    def time_terms(self, times: torch.Tensor) -> torch.Tensor:
        """(steps,) flow times -> per-step time terms, indexed by step in embed_suffix."""

    def embed_suffix(self, x: torch.Tensor, time_term: torch.Tensor) -> torch.Tensor:
        """(S, T, A) noisy actions at one step -> (S, T, D) action-token embeddings."""

    def suffix_layers(self) -> list[Any]:
        """The layers of the action tokens, fused for inference (one per cache layer)."""

    def suffix_norm(self, h: torch.Tensor) -> torch.Tensor: ...

    def suffix_rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(T,) rotary positions -> cos, sin (T, hd)."""

    def suffix_mask(self, t: int, device: torch.device) -> torch.Tensor | None:
        """(T, T) bool, True where action token i may attend to action token j; None = all."""

    def decode_suffix(self, h: torch.Tensor) -> torch.Tensor:
        """(S, T, D) normed hidden -> velocity (S, T, A)."""

    # ---------------------------------------------------------------- output
    def decode_actions(self, actions: torch.Tensor, history_xyz: torch.Tensor,
                       history_rot: torch.Tensor) -> DecodedActions:
        """Normalized actions (S, T, A) on the CPU -> physical actions (and a trajectory)."""
