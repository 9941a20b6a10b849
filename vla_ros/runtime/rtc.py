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
from typing import Any

import numpy as np
import torch

from vla_ros.model.config import FlowConfig
from vla_ros.model.flow_matching import FlowSchedule
from vla_ros.runtime.inputs import PolicyInputError

SCHEDULES = ("zeros", "ones", "linear", "exp")


@dataclass(frozen=True)
class ChunkGuide:
    """What the next chunk is guided by (picklable: it crosses to the policy process).

    leftover: (T_prev, A_prev) normalized actions of the previous chunk not yet executed when
    inference starts (T_prev <= the chunk's T, A_prev <= its A; the rest is zero-padded).
    inference_delay d: actions that will have been executed when the new chunk arrives; they are
    guided with full weight. execution_horizon H: how far into the leftover the guidance reaches
    (cut to T_prev; d is cut to H, as LeRobot does). schedule: how the weight falls from d to H.
    """

    leftover: Any  # np.ndarray | torch.Tensor (T_prev, A_prev)
    inference_delay: int
    execution_horizon: int
    schedule: str = "linear"
    max_guidance_weight: float = 10.0

    def __post_init__(self) -> None:
        lo = self.leftover
        if not isinstance(lo, (np.ndarray, torch.Tensor)):
            raise PolicyInputError(f"guide leftover must be a numpy array or torch tensor, got {type(lo).__name__}")
        if lo.ndim != 2 or lo.shape[0] < 1 or lo.shape[1] < 1:
            raise PolicyInputError(f"guide leftover must be (T_prev >= 1, A_prev >= 1), got shape {tuple(lo.shape)}")
        if isinstance(lo, np.ndarray) and not np.issubdtype(lo.dtype, np.floating) or \
                isinstance(lo, torch.Tensor) and not lo.is_floating_point():
            raise PolicyInputError(f"guide leftover must be floating point, got {lo.dtype}")
        finite = torch.isfinite(lo).all() if isinstance(lo, torch.Tensor) else np.isfinite(lo).all()
        if not bool(finite):
            raise PolicyInputError("guide leftover contains NaN or inf")
        for name in ("inference_delay", "execution_horizon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise PolicyInputError(f"guide {name} must be an int, got {value!r}")
        if self.inference_delay < 0:
            raise PolicyInputError(f"guide inference_delay must be >= 0, got {self.inference_delay}")
        if self.execution_horizon < 1:
            raise PolicyInputError(f"guide execution_horizon must be >= 1, got {self.execution_horizon}")
        if self.schedule not in SCHEDULES:
            raise PolicyInputError(f"guide schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        w = self.max_guidance_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise PolicyInputError(f"guide max_guidance_weight must be a finite number > 0, got {w!r}")

    def tensors(self, chunk_shape: tuple[int, int], device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> "GuideTensors":
        """The guide for a chunk of shape (T, A): the padded target and the prefix weights."""
        t, a = chunk_shape
        t_prev, a_prev = self.leftover.shape
        if t_prev > t or a_prev > a:
            raise PolicyInputError(f"guide leftover {tuple(self.leftover.shape)} does not fit the chunk ({t}, {a})")
        target = torch.zeros(t, a, dtype=dtype, device=device)
        target[:t_prev, :a_prev] = torch.as_tensor(self.leftover).to(device, dtype)
        horizon = min(int(self.execution_horizon), t_prev)  # nothing to join beyond the leftover
        w = prefix_weights(int(self.inference_delay), horizon, t, self.schedule)
        return GuideTensors(target=target, weights=w.to(device, dtype)[:, None],
                            max_guidance_weight=float(self.max_guidance_weight))


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
