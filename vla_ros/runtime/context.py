"""The per-tick state between prefill, reasoning and denoising."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vla_ros.runtime.output import Timings


class StaleContextError(RuntimeError):
    """A Context from an older prefill: its K/V have been overwritten by a newer tick."""


@dataclass
class GuidancePrefix:
    """Navigation guidance's second prefix (Alpamayo 1.5 classifier-free guidance): the prompt
    without the route span, then the same reasoning tokens, in its own K/V buffers. Every flow
    step's velocity is (1 - weight) * v(this prefix) + weight * v(the prompt's)."""

    weight: float
    length: int  # tokens in its cache
    next_position: int  # rotary position of its first action token
    prompt_length: int  # its prompt alone (where a per-sample rollout rewinds to)
    prompt_next_position: int


@dataclass
class Context:
    """What prefill leaves behind. The K/V themselves live in the policy's preallocated buffers
    (`epoch` ties this context to their current contents).

    length: tokens in the prefix cache (prompt, then any reasoning tokens)
    next_position: rotary (M-RoPE text) position of the next token, i.e. of the first action token
    logits: (1, V) float32 logits of the last cached token (where reasoning continues)
    history_xyz / history_rot: (N, 3) / (N, 3, 3) float64, the t0-frame ego history
    """

    epoch: int
    length: int
    prompt_length: int
    next_position: int
    logits: torch.Tensor
    history_xyz: torch.Tensor
    history_rot: torch.Tensor
    t0_ns: int | None = None
    reasoning_ids: list[int] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    vision_encoded: int = 0
    vision_reused: int = 0
    prompt_tokens_dropped: int = 0  # instruction tokens cut off at the model's token budget
    guidance: GuidancePrefix | None = None  # navigation guidance on this tick (None: plain)
