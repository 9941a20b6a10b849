"""Action-in and action-out projections of the kv_expert (`action_proj.type` picks one).

`fourier_silu` (models/drive-tiny): Fourier features of the noisy action, mixed with a
sinusoidal time embedding through one hidden SiLU layer:

    h = W_out silu(W_a [x, sin(f x), cos(f x)] + W_t temb(t) + b)

`alpamayo_v2` (the Alpamayo-R1 release's PerWaypointActionInProjV2, same module and key names):

    e(u) = sqrt(2) [sin(2 pi f u), cos(2 pi f u)],  f log-spaced in [1, max_frequency]
    h = LayerNorm(trunk([e(a), e(kappa), e(t)]))
    trunk = Linear, SiLU, (RMSNorm, Linear, SiLU) x (layers - 1), RMSNorm, Linear

In both, the first Linear is linear in the time features, so its time part plus bias depends on
t only: the runtime computes it once per flow step (`time_term`) instead of once per step per tick.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from vla_ros.model.config import ActionProjConfig
from vla_ros.model.qwen3_layer import rms_norm


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


class RMSNorm(nn.Module):
    """Normalizes in float32, then scales (the reference's action-in RMSNorm; eps 1e-5)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)  # one fused op (the same math)


class FourierEncoderV2(nn.Module):
    def __init__(self, dim: int, max_freq: float) -> None:
        super().__init__()
        freqs = torch.logspace(0, math.log10(max_freq), steps=dim // 2, dtype=torch.float32)
        self.register_buffer("freqs", freqs[None, :])  # persistent: the release stores it

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """(...) -> (..., dim) in float32."""
        arg = u.float()[..., None] * self.freqs.float() * 2 * torch.pi
        return torch.cat([torch.sin(arg), torch.cos(arg)], -1) * math.sqrt(2)


class MLPEncoder(nn.Module):
    def __init__(self, features: int, layers: int, hidden: int, out: int) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Linear(features, hidden), nn.SiLU()]
        for i in range(layers):
            last = i == layers - 1
            mods += [RMSNorm(hidden), nn.Linear(hidden, out if last else hidden)] + ([] if last else [nn.SiLU()])
        self.trunk = nn.Sequential(*mods)


class AlpamayoActionInV2(nn.Module):
    """PerWaypointActionInProjV2 with the first Linear split into action and time parts."""

    def __init__(self, action_dim: int, hidden: int, cfg: ActionProjConfig) -> None:
        super().__init__()
        self.cfg = cfg
        f = cfg.fourier_features
        self.sinus = nn.ModuleList(FourierEncoderV2(f, cfg.max_frequency) for _ in range(action_dim))
        self.timestep_fourier_encoder = FourierEncoderV2(f, cfg.max_frequency)
        self.encoder = MLPEncoder(f * (action_dim + 1), cfg.encoder_layers, cfg.encoder_hidden, hidden)
        self.norm = nn.LayerNorm(hidden)
        self._action_features = f * action_dim

    def time_term(self, t: torch.Tensor) -> torch.Tensor:
        """t (S,) -> (S, encoder_hidden): the time columns of the first Linear, plus its bias."""
        first = self.encoder.trunk[0]
        w = first.weight[:, self._action_features:]
        return torch.nn.functional.linear(self.timestep_fourier_encoder(t).to(w.dtype), w, first.bias)

    def forward_with_time_term(self, x: torch.Tensor, time_term: torch.Tensor) -> torch.Tensor:
        """x (B, T, A), time_term (H,) or (B, 1, H) -> (B, T, hidden)."""
        first = self.encoder.trunk[0]
        w = first.weight[:, :self._action_features]
        # All action channels at once, in the reference's operation order ((x f) 2) pi, so that
        # arguments of hundreds of radians round exactly as its per-channel encoders do.
        freqs = torch.cat([enc.freqs.float() for enc in self.sinus])  # (A, F/2)
        arg = x.float()[..., None] * freqs * 2 * torch.pi  # (B, T, A, F/2)
        feats = (torch.cat([torch.sin(arg), torch.cos(arg)], -1) * math.sqrt(2)).flatten(-2).to(w.dtype)
        h = torch.nn.functional.linear(feats, w) + time_term
        for mod in self.encoder.trunk[1:]:  # the modules' own functions: no Module call per layer per step
            if isinstance(mod, nn.Linear):
                h = torch.nn.functional.linear(h, mod.weight, mod.bias)
            elif isinstance(mod, RMSNorm):
                h = rms_norm(h, mod.weight, mod.eps)
            elif isinstance(mod, nn.SiLU):
                h = torch.nn.functional.silu(h)
            else:
                h = mod(h)
        n = self.norm
        return torch.nn.functional.layer_norm(h, n.normalized_shape, n.weight, n.bias, n.eps)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x (B, T, A), t (B,) -> (B, T, hidden)."""
        return self.forward_with_time_term(x, self.time_term(t.reshape(-1))[:, None, :])


def action_in_projection(action_dim: int, hidden: int, cfg: ActionProjConfig) -> nn.Module:
    """The action-in module `cfg.type` names."""
    if cfg.type == "alpamayo_v2":
        return AlpamayoActionInV2(action_dim, hidden, cfg)
    return FourierActionIn(action_dim, hidden, cfg)


class ActionOut(nn.Linear):
    """Expert hidden (B, T, hidden) -> velocity (B, T, A)."""
