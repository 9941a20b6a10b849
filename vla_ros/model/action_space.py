"""Unicycle acceleration/curvature action space (Alpamayo-R1).

An action is 64 x (acceleration a [m/s^2], curvature k [1/m]) at dt = 0.1 s, normalized per
channel with (mean, std) from action_stats.json. Integration from the t0 state (position and
heading of the last history pose, speed v0 estimated from the history):

    v[k+1]     = v[k] + a[k] dt
    theta[k+1] = theta[k] + k[k] v[k] dt + k[k] a[k] dt^2 / 2
    x[k+1]     = x[k] + dt/2 (v[k] cos theta[k] + v[k+1] cos theta[k+1])   (trapezoidal; y with sin)

Waypoint k (k = 1..64) is the state after k steps; z is held at the t0 height and rotations are
yaw-only about z.

`action_space.clip` False (Alpamayo-R1): physical actions are never changed; `within_bounds`
reports the samples that leave the bounds. `action_space.speed_estimate` picks how v0 is found.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from vla_ros.model.config import ActionSpaceConfig


@dataclass(frozen=True)
class ActionStats:
    """Per-channel normalization (acceleration, curvature)."""

    mean: tuple[float, float] = (0.029, 0.000269)
    std: tuple[float, float] = (0.681, 0.0261)

    def to_json(self) -> str:
        return json.dumps({"names": ["acceleration", "curvature"], "mean": list(self.mean), "std": list(self.std)}, indent=2)

    @classmethod
    def load(cls, path: str | Path) -> "ActionStats":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            mean, std = tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"action stats '{path}' unreadable: {exc}") from exc
        if len(mean) != 2 or len(std) != 2 or not all(s > 0 and math.isfinite(s) for s in std):
            raise ValueError(f"action stats '{path}': need 2 means and 2 positive stds, got {mean}, {std}")
        return cls(mean=mean, std=std)  # type: ignore[arg-type]


class UnicycleAccelCurvature:
    def __init__(self, cfg: ActionSpaceConfig, stats: ActionStats) -> None:
        self.cfg = cfg
        self.stats = stats

    @property
    def shape(self) -> tuple[int, int]:
        return (self.cfg.num_waypoints, 2)

    def denormalize(self, action: torch.Tensor) -> torch.Tensor:
        """(..., T, 2) normalized -> physical (a, k); clipped to the bounds only if `clip`."""
        mean = action.new_tensor(self.stats.mean)
        std = action.new_tensor(self.stats.std)
        x = action * std + mean
        if not self.cfg.clip:
            return x
        bounds = action.new_tensor([self.cfg.accel_bound, self.cfg.curvature_bound])
        return torch.maximum(torch.minimum(x, bounds), -bounds)

    def within_bounds(self, action: torch.Tensor) -> torch.Tensor:
        """(..., T, 2) normalized -> (...,) bool: every physical value inside the bounds."""
        x = action * action.new_tensor(self.stats.std) + action.new_tensor(self.stats.mean)
        bounds = action.new_tensor([self.cfg.accel_bound, self.cfg.curvature_bound])
        return (x.abs() <= bounds).all(-1).all(-1)

    def normalize(self, action: torch.Tensor) -> torch.Tensor:
        return (action - action.new_tensor(self.stats.mean)) / action.new_tensor(self.stats.std)

    def estimate_speed(self, hist_xyz: torch.Tensor, hist_rot: torch.Tensor) -> torch.Tensor:
        """Speed at t0 (B,) from the history, by the configured method."""
        if self.cfg.speed_estimate == "trapezoid_smooth":
            return self.trapezoid_speed(hist_xyz, hist_rot)
        return self.window_speed(hist_xyz, hist_rot)

    def trapezoid_speed(self, hist_xyz: torch.Tensor, hist_rot: torch.Tensor) -> torch.Tensor:
        """Alpamayo-R1's estimate_t0_states: speeds v_0..v_N of the whole history solve, by least
        squares, dp_k = dt/2 (v_k u_k + v_k+1 u_k+1) with u the unit heading, plus a 3rd-order
        smoothness penalty v_lambda/dt^6 and a v_ridge ridge; the speed at t0 is v_N. -> (B,)"""
        dt, dtype = self.cfg.dt, hist_xyz.dtype
        dxy = hist_xyz[..., 1:, :2] - hist_xyz[..., :-1, :2]  # (B, N, 2)
        theta = torch.atan2(hist_rot[..., 1, 0], hist_rot[..., 0, 0])  # (B, N+1)
        d = torch.atan2(torch.sin(theta.diff(dim=-1)), torch.cos(theta.diff(dim=-1)))
        theta = torch.cat([theta[..., :1], theta[..., :1] + torch.cumsum(d, dim=-1)], dim=-1)  # unwrapped
        b, n = dxy.shape[0], dxy.shape[-2]
        a = torch.zeros(b, 2 * n, n + 1, dtype=dtype, device=dxy.device)
        rows, cols = torch.arange(n), torch.arange(n)
        c, s = torch.cos(theta), torch.sin(theta)
        a[:, 2 * rows, cols], a[:, 2 * rows, cols + 1] = c[:, :-1], c[:, 1:]
        a[:, 2 * rows + 1, cols], a[:, 2 * rows + 1, cols + 1] = s[:, :-1], s[:, 1:]
        g = (2 / dt * dxy).flatten(-2)  # (B, 2N)
        d3 = torch.zeros(max(n - 2, 0), n + 1, dtype=dtype, device=dxy.device)  # third differences
        r = torch.arange(max(n - 2, 0))
        d3[r, r], d3[r, r + 1], d3[r, r + 2], d3[r, r + 3] = -1.0, 3.0, -3.0, 1.0
        lhs = a.transpose(-1, -2) @ a + self.cfg.v_lambda / dt ** 6 * (d3.T @ d3) \
            + self.cfg.v_ridge * torch.eye(n + 1, dtype=dtype, device=dxy.device)
        rhs = (a.transpose(-1, -2) @ g[..., None])
        v = torch.cholesky_solve(rhs, torch.linalg.cholesky(lhs))[..., 0]
        return v[..., -1]

    def window_speed(self, hist_xyz: torch.Tensor, hist_rot: torch.Tensor) -> torch.Tensor:
        """Speed at t0 along the t0 heading by ridge-regularized quadratic least squares.

        hist_xyz (B, N, 3), hist_rot (B, N, 3, 3), sampled every dt, last = t0 -> (B,)"""
        w = min(self.cfg.velocity_window, hist_xyz.shape[-2])
        dtype = torch.float64
        p = hist_xyz[..., -w:, :2].to(dtype)  # (B, w, 2)
        t = (torch.arange(w, dtype=dtype, device=p.device) - (w - 1)) * self.cfg.dt  # ..., 0
        basis = torch.stack([torch.ones_like(t), t, 0.5 * t * t], dim=-1)  # (w, 3)
        # Ridge on the acceleration term only: a noisy history should not invent a jerk.
        reg = torch.diag(torch.tensor([0.0, 0.0, self.cfg.velocity_ridge], dtype=dtype, device=p.device))
        coef = torch.linalg.solve(basis.T @ basis + reg, basis.T @ p)  # (B, 3, 2)
        vel = coef[..., 1, :]  # (B, 2) at t = 0
        heading = hist_rot[..., -1, :2, 0].to(dtype)  # x axis of the t0 pose
        heading = heading / heading.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        return (vel * heading).sum(-1).to(hist_xyz.dtype)

    def integrate(self, accel_curv: torch.Tensor, v0: torch.Tensor, xyz0: torch.Tensor, yaw0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Physical (B, T, 2), v0 (B,), xyz0 (B, 3), yaw0 (B,) -> xyz (B, T, 3), rot (B, T, 3, 3)."""
        dt = self.cfg.dt
        a, k = accel_curv[..., 0], accel_curv[..., 1]
        v = torch.cat([v0[:, None], v0[:, None] + torch.cumsum(a * dt, dim=-1)], dim=-1)  # (B, T+1)
        dtheta = k * v[:, :-1] * dt + k * a * (dt * dt / 2)
        theta = torch.cat([yaw0[:, None], yaw0[:, None] + torch.cumsum(dtheta, dim=-1)], dim=-1)
        vx, vy = v * torch.cos(theta), v * torch.sin(theta)
        dx = 0.5 * dt * (vx[:, :-1] + vx[:, 1:])
        dy = 0.5 * dt * (vy[:, :-1] + vy[:, 1:])
        x = xyz0[:, None, 0] + torch.cumsum(dx, dim=-1)
        y = xyz0[:, None, 1] + torch.cumsum(dy, dim=-1)
        z = xyz0[:, None, 2].expand_as(x)
        xyz = torch.stack([x, y, z], dim=-1)
        th = theta[:, 1:]
        c, s = torch.cos(th), torch.sin(th)
        zero, one = torch.zeros_like(c), torch.ones_like(c)
        rot = torch.stack([torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1), torch.stack([zero, zero, one], -1)], -2)
        return xyz, rot

    def action_to_traj(self, action: torch.Tensor, hist_xyz: torch.Tensor, hist_rot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized action (B, T, 2), history (B, N, 3) / (B, N, 3, 3) in the t0 frame ->
        xyz (B, T, 3), rot (B, T, 3, 3) in the t0 frame (float64 integration)."""
        phys = self.denormalize(action.to(torch.float64))
        hx, hr = hist_xyz.to(torch.float64), hist_rot.to(torch.float64)
        v0 = self.estimate_speed(hx, hr)
        yaw0 = torch.atan2(hr[:, -1, 1, 0], hr[:, -1, 0, 0])
        return self.integrate(phys, v0, hx[:, -1], yaw0)
