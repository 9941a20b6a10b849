"""Real-time chunking (RTC): guide a new action chunk to agree with what is already committed.

While a chunk executes, the next one is denoised. By the time it arrives, the first
`inference_delay` actions of the old chunk's remainder (the *leftover*) have been executed or are
about to be, so the new chunk must start where they left off. RTC (Black et al., "Real-Time
Execution of Action Chunking Flow Policies"; LeRobot's `policies/rtc`) treats this as inpainting:
at every Euler step the denoised estimate x_hat = x + (t_data - t) * v is pulled towards the
leftover, weighted per action by a prefix schedule, with a weight that is large early in the flow:

    v_guided = v + sign * w(tau) * W * (leftover - x_hat)

sign points the correction along the integration direction (x moves towards the leftover); tau is
the progress from noise (0) to data (1); W (T, 1) the prefix weights; w(tau) =
min(max_guidance_weight, (tau^2 + (1 - tau)^2) / (tau (1 - tau))) (LeRobot's c * inv_r2).

The Jacobian of x_hat with respect to x is taken as the identity: LeRobot computes v before x
requires grad, so its autograd "vector-Jacobian product" is the error itself. No backward pass is
needed, so guidance runs inside the runtime's denoise loop, the CUDA graph included.

Everything here works in the flow convention of `vla_ros.model.config.FlowConfig` (either
direction), so any family can be guided; the leftover is in the model's normalized action space
(PolicyOutput.raw_actions), zero-padded to the chunk's (T, A) like LeRobot's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vla_ros.model.config import FlowConfig
from vla_ros.model.flow_matching import FlowSchedule
from vla_ros.runtime.chunk_guide import SCHEDULES, ChunkGuide
from vla_ros.runtime.inputs import PolicyInputError

# The guide itself is torch-free (chunk_guide.py): the node builds it without importing torch.
__all__ = ["SCHEDULES", "ChunkGuide", "GuideTensors", "guidance_weight", "guided_velocity", "prefix_weights", "step_coefficients"]


@dataclass(frozen=True)
class GuideTensors:
    """A ChunkGuide laid out for one chunk shape, on the backend's device."""

    target: torch.Tensor  # (T, A) the leftover, zero-padded
    weights: torch.Tensor  # (T, 1) prefix weights
    max_guidance_weight: float


def prefix_weights(delay: int, horizon: int, total: int, schedule: str) -> torch.Tensor:
    """(total,) float32 weight per action of the new chunk: 1 for the first min(delay, horizon);
    beyond that up to `horizon`, 'zeros' 0, 'ones' 1, 'linear' falling evenly towards 0 (both
    ends excluded), 'exp' the linear weight times (e^lin - 1) / (e - 1); 0 from `horizon` on."""
    if schedule not in SCHEDULES:
        raise PolicyInputError(f"RTC schedule must be one of {SCHEDULES}, got {schedule!r}")
    d = min(delay, horizon)
    w = torch.zeros(total, dtype=torch.float32)
    w[:d] = 1.0
    ramp = min(horizon, total) - d  # actions between the delay and the horizon
    if ramp > 0 and schedule == "ones":
        w[d:d + ramp] = 1.0
    elif ramp > 0 and schedule in ("linear", "exp"):
        lin = torch.linspace(1.0, 0.0, ramp + 2)[1:-1]
        w[d:d + ramp] = lin * torch.expm1(lin).div(math.e - 1) if schedule == "exp" else lin
    return w


@dataclass(frozen=True)
class StepCoefficients:
    """Per Euler step i: scales[i] = sign * w(tau_i) and reaches[i] = t_data - t_i (x_hat = x + reach * v)."""

    scales: tuple[float, ...]
    reaches: tuple[float, ...]


def step_coefficients(flow: FlowConfig, schedule: FlowSchedule, max_guidance_weight: float) -> StepCoefficients:
    """The guidance terms of each step of `schedule` in `flow`'s direction."""
    t_data = 0.0 if flow.direction == "data_to_noise" else 1.0  # openpi / LeRobot: noise at t=1
    sign = -1.0 if t_data == 0.0 else 1.0  # the sign of dt: the correction moves x along the flow
    scales, reaches = [], []
    for t in schedule.times:
        tau = 1.0 - t if t_data == 0.0 else t  # progress from noise (0) to data (1)
        scales.append(sign * guidance_weight(tau, max_guidance_weight))
        reaches.append(t_data - t)
    return StepCoefficients(tuple(scales), tuple(reaches))


def guidance_weight(tau: float, max_guidance_weight: float) -> float:
    """min(max, (tau^2 + (1-tau)^2) / (tau (1-tau))), evaluated in float32 like LeRobot; at
    tau = 0 (pure noise) the maximum, at tau = 1 (data, never an Euler step) zero."""
    tau32 = torch.tensor(tau, dtype=torch.float32)
    cap = torch.tensor(max_guidance_weight, dtype=torch.float32)
    one_minus_sq = (1 - tau32) ** 2
    inv_r2 = (one_minus_sq + tau32 ** 2) / one_minus_sq
    c = torch.nan_to_num((1 - tau32) / tau32, posinf=float(cap))
    return float(torch.minimum(torch.nan_to_num(c * inv_r2, posinf=float(cap)), cap))


def guided_velocity(x: torch.Tensor, v: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                    scale: torch.Tensor | float, reach: float) -> torch.Tensor:
    """The guided velocity for noisy actions x (S, T, A) with network velocity v (S, T, A); target
    (T, A) and weights (T, 1) from GuideTensors, scale and reach from StepCoefficients (scale may
    be a 0-d tensor, so that a captured CUDA graph reads it from memory)."""
    return v + scale * (weights * (target - (x + reach * v)))


__all__ = ["SCHEDULES", "ChunkGuide", "GuideTensors", "StepCoefficients", "guidance_weight", "guided_velocity",
           "prefix_weights", "step_coefficients"]
