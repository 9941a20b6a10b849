"""The guide of a real-time-chunking inference (rtc.py): what the next action chunk must agree
with. Plain numpy, no torch: the node builds it in its own process and sends it to the policy's."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

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
        is_tensor = hasattr(lo, "detach") and hasattr(lo, "is_floating_point")  # a torch.Tensor, without importing torch
        if not (isinstance(lo, np.ndarray) or is_tensor):
            raise PolicyInputError(f"guide leftover must be a numpy array or torch tensor, got {type(lo).__name__}")
        if lo.ndim != 2 or lo.shape[0] < 1 or lo.shape[1] < 1:
            raise PolicyInputError(f"guide leftover must be (T_prev >= 1, A_prev >= 1), got shape {tuple(lo.shape)}")
        if not (lo.is_floating_point() if is_tensor else np.issubdtype(lo.dtype, np.floating)):
            raise PolicyInputError(f"guide leftover must be floating point, got {lo.dtype}")
        finite = lo.isfinite().all() if is_tensor else np.isfinite(lo).all()
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

    def tensors(self, chunk_shape: tuple[int, int], device: Any = "cpu", dtype: Any = None) -> Any:
        """The guide for a chunk of shape (T, A) on the policy's side: the padded target and the
        prefix weights (rtc.GuideTensors; dtype None: float32)."""
        import torch

        from vla_ros.runtime.rtc import GuideTensors, prefix_weights

        dtype = torch.float32 if dtype is None else dtype
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
