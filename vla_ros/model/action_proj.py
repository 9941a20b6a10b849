"""Action-in and action-out projections of the kv_expert.

Action-in (per waypoint): Fourier features of the noisy action, mixed with a sinusoidal time
embedding through one hidden SiLU layer:

    h = W_out silu(W_a [x, sin(f x), cos(f x)] + W_t temb(t) + b)

`W_t temb(t) + b` depends on t only, so the runtime computes it once per flow step
(`time_term`) instead of once per step per tick.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from vla_ros.model.config import ActionProjConfig


def sinusoidal_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """t (...,) in [0, 1] -> (..., dim) [sin, cos] at geometric frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = (t.float() * scale)[..., None] * freqs
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class FourierActionIn(nn.Module):
    def __init__(self, action_dim: int, hidden: int, cfg: ActionProjConfig) -> None:
        super().__init__()
        self.cfg = cfg
        mid = cfg.mlp_dim or hidden
        freqs = torch.pi * torch.logspace(0, math.log2(cfg.max_frequency), cfg.num_frequencies, base=2.0)
        self.register_buffer("freqs", freqs, persistent=False)  # derived from config, not a weight
        self.action_proj = nn.Linear(action_dim * (1 + 2 * cfg.num_frequencies), mid, bias=False)
        self.time_proj = nn.Linear(cfg.time_embed_dim, mid, bias=True)
        self.out_proj = nn.Linear(mid, hidden, bias=True)

    def fourier(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, A) -> (B, T, A * (1 + 2F))."""
        xf = x[..., None] * self.freqs.to(x.dtype)  # (B, T, A, F)
        feats = torch.cat([x[..., None], torch.sin(xf), torch.cos(xf)], dim=-1)
        return feats.flatten(-2)

    def time_term(self, t: torch.Tensor) -> torch.Tensor:
        """t (S,) -> (S, mid): the time-only part, precomputed per flow step."""
        emb = sinusoidal_embedding(t, self.cfg.time_embed_dim).to(self.time_proj.weight.dtype)
        return self.time_proj(emb)

    def forward_with_time_term(self, x: torch.Tensor, time_term: torch.Tensor) -> torch.Tensor:
        """x (B, T, A), time_term (mid,) or (B, 1, mid) -> (B, T, hidden)."""
        h = self.action_proj(self.fourier(x)) + time_term
        return self.out_proj(torch.nn.functional.silu(h))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x (B, T, A), t (B,) -> (B, T, hidden)."""
        return self.forward_with_time_term(x, self.time_term(t.reshape(-1))[:, None, :])


class ActionOut(nn.Linear):
    """Expert hidden (B, T, hidden) -> velocity (B, T, A)."""
