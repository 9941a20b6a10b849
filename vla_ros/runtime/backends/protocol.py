"""The backend protocol: the three stages that differ between backends, behind one `Policy`.

`Policy` (runtime/policy.py) owns the family-independent front: input validation, the vision
embedding cache, the start noise, the stale-context check's error, the family's action decoding
and the timings. A backend owns where the prefix K/V live and how the stages run:

    encode_images(images)                 uint8 (N, H, W, 3) -> one ImageEmbedding per image
    prefill(plan, embeds, budget)         the family's prefix plan -> PrefixState (K/V kept inside);
                                          the torch backend also takes `unguided=` (a second plan:
                                          navigation guidance's prefix, in its own buffers)
    denoise(context, x, steps, guide)     all Euler steps from x (S, T, A) -> actions (S, T, A),
                                          guided by a real-time-chunking guide if given
    velocity(context, x, t)               one step's velocity (parity checks)
    reason(context, max_tokens, ...)      decoded token ids (backends without a decoder raise)
    is_current(context)                   whether the context's K/V are still the backend's
    prefix_kv(length)                     K and V (layers, kv_heads, length, head_dim) on the host
    synchronize()                         wait for queued device work (timings)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from vla_ros.model.family import ImageEmbedding


class BackendError(ValueError):
    """The backend cannot run what was asked (missing runtime or provider, unsupported feature)."""


def nav_guidance_unsupported(what: str, weight: float, backend: str) -> BackendError:
    """Alpamayo 1.5's navigation guidance needs a second prefix that only the torch backend runs."""
    return BackendError(f"{what} guides its flow towards the navigation instruction (classifier-free guidance, weight "
                        f"{weight}), which runs on the torch backend only; the {backend} backend would run something "
                        "else. Use backend 'torch', or nav_guidance_weight=1.0 to run without guidance")


@dataclass(frozen=True)
class PrefixState:
    epoch: int  # bumped by every prefill: contexts of older epochs are stale
    length: int  # prefix tokens cached
    next_position: int  # rotary position of the first action token
    logits: torch.Tensor | None  # (1, V) float32 at the last prefix token
    # Navigation guidance's second prefix (torch backend): its length and first action position.
    unguided: tuple[int, int] | None = None


class Backend(Protocol):
    name: str

    def encode_images(self, images: np.ndarray) -> list[ImageEmbedding]: ...

    def prefill(self, plan: Any, embeds: list[ImageEmbedding], budget: int) -> PrefixState: ...

    def denoise(self, context: Any, x: torch.Tensor, steps: int | None, guide: Any = None) -> torch.Tensor:
        """guide: a `rtc.GuideTensors` (real-time chunking) applied on every step, or None; a
        backend that cannot apply it raises BackendError."""

    def velocity(self, context: Any, x: torch.Tensor, t: float) -> torch.Tensor: ...

    def reason(self, context: Any, max_tokens: int, greedy: bool, temperature: float, top_p: float,
               generator: torch.Generator | None) -> list[int]: ...

    def is_current(self, context: Any) -> bool: ...

    def prefix_kv(self, length: int) -> tuple[np.ndarray, np.ndarray]: ...

    def synchronize(self) -> None: ...
