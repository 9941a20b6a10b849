"""The flow-matching start noise, scaled: `inference.noise_scale` (eval `--noise-scale`).

0 (the config's default) denoises from zero start noise: one deterministic trajectory, the same
output for the same input. 1 samples the distribution the model learned (`Policy.act` with
`noise=None` does that too); values between trade the spread of the samples for precision.
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
