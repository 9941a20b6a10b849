"""The flow-matching start noise, scaled: `inference.noise_scale` (eval `--noise-scale`).

1 (the default) samples the distribution the model learned. Smaller values start the
denoising closer to zero, trading the spread of the samples for precision; 0 gives one
deterministic trajectory near the distribution's mode (the same output for the same input).
"""
from __future__ import annotations

import torch


def start_noise(num_waypoints: int, action_dim: int, samples: int, scale: float,
                generator: torch.Generator | None = None) -> torch.Tensor | None:
    """Noise (samples, T, A) to pass to `Policy.act(noise=...)`, or None at scale 1: the policy
    then draws its own from `generator`, exactly as without this option."""
    if scale < 0:
        raise ValueError(f"noise scale must be >= 0, got {scale}")
    if scale == 1.0:
        return None
    return torch.randn((samples, num_waypoints, action_dim), generator=generator) * scale
