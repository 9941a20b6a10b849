"""Training targets for the action expert: the recorded future path -> (acceleration, curvature).

The runtime integrates actions from (v0 estimated from the history, the t0 pose) with
`UnicycleAccelCurvature.integrate`. The targets invert exactly that: a closed-form first guess
from finite differences (speeds from consecutive positions, heading changes from the recorded
orientations), then a few hundred batched gradient steps on the integrated positions so that
integrating the target reproduces the recorded path (round-trip error in centimetres), with a
small smoothness term so that standstill (curvature undefined) and odometry noise do not
become jagged targets.
"""
from __future__ import annotations

import torch

from vla_ros.model.action_space import UnicycleAccelCurvature

_CURV_SCALE = 30.0  # optimize curvature * scale: both channels then have similar magnitudes


def initial_guess(space: UnicycleAccelCurvature, future_xyz: torch.Tensor, future_rot: torch.Tensor,
                  v0: torch.Tensor) -> torch.Tensor:
    """future_xyz (B, T, 3), future_rot (B, T, 3, 3) in the t0 frame, v0 (B,) -> (B, T, 2)."""
    dt = space.cfg.dt
    p = torch.cat([torch.zeros_like(future_xyz[:, :1, :2]), future_xyz[..., :2]], dim=1)  # (B, T+1, 2)
    seg = (p[:, 1:] - p[:, :-1]).norm(dim=-1) / dt  # mean speed over each step (B, T)
    # Trapezoidal: seg[k] = (v[k] + v[k+1]) / 2, so v[k+1] = 2 seg[k] - v[k]; that recursion
    # oscillates with any error in v0, so use the midpoint average instead (smooth, ~exact).
    v = torch.cat([v0[:, None], 0.5 * (seg[:, :-1] + seg[:, 1:]), seg[:, -1:]], dim=1)  # (B, T+1)
    accel = (v[:, 1:] - v[:, :-1]) / dt
    yaw = torch.atan2(future_rot[..., 1, 0], future_rot[..., 0, 0])
    yaw = torch.cat([torch.zeros_like(yaw[:, :1]), yaw], dim=1)
    dyaw = torch.remainder(yaw[:, 1:] - yaw[:, :-1] + torch.pi, 2 * torch.pi) - torch.pi
    vbar = 0.5 * (v[:, 1:] + v[:, :-1])
    curv = torch.where(vbar > 0.5, dyaw / (vbar * dt).clamp_min(1e-6), torch.zeros_like(dyaw))
    return torch.stack([accel, curv], dim=-1)


def invert_path(space: UnicycleAccelCurvature, future_xyz: torch.Tensor, future_rot: torch.Tensor,
                hist_xyz: torch.Tensor, hist_rot: torch.Tensor, iterations: int = 300,
                smooth: float = 1e-3) -> torch.Tensor:
    """Physical actions (B, T, 2) whose integration from the history-estimated t0 state follows
    future_xyz (B, T, 3). All inputs in the t0 ego frame, float64 internally."""
    fx, fr = future_xyz.double(), future_rot.double()
    hx, hr = hist_xyz.double(), hist_rot.double()
    v0 = space.estimate_speed(hx, hr)
    yaw0 = torch.atan2(hr[:, -1, 1, 0], hr[:, -1, 0, 0])
    xyz0 = hx[:, -1]
    guess = initial_guess(space, fx, fr, v0)
    scale = guess.new_tensor([1.0, _CURV_SCALE])
    z = (guess * scale).detach().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.02)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations)
    for _ in range(iterations):
        opt.zero_grad()
        xyz, _ = space.integrate(z / scale, v0, xyz0, yaw0)
        fit = ((xyz[..., :2] - fx[..., :2]) ** 2).sum(-1).mean()
        rough = ((z[:, 1:] - z[:, :-1]) ** 2).sum(-1).mean()
        (fit + smooth * rough).backward()
        opt.step()
        sched.step()
    bounds = guess.new_tensor([space.cfg.accel_bound, space.cfg.curvature_bound])
    phys = (z.detach() / scale)
    return torch.maximum(torch.minimum(phys, bounds), -bounds)


def roundtrip_error(space: UnicycleAccelCurvature, actions: torch.Tensor, future_xyz: torch.Tensor,
                    hist_xyz: torch.Tensor, hist_rot: torch.Tensor) -> torch.Tensor:
    """Per-sample mean xy distance (B,) between the integrated actions and the recorded path."""
    hx, hr = hist_xyz.double(), hist_rot.double()
    v0 = space.estimate_speed(hx, hr)
    yaw0 = torch.atan2(hr[:, -1, 1, 0], hr[:, -1, 0, 0])
    xyz, _ = space.integrate(actions.double(), v0, hx[:, -1], yaw0)
    return (xyz[..., :2] - future_xyz.double()[..., :2]).norm(dim=-1).mean(-1)
