"""What a policy takes: the inputs of one tick and their validation (outputs: `output.py`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class PolicyInputError(ValueError):
    """An input to the policy has the wrong count, shape, dtype or non-finite values."""


@dataclass(frozen=True)
class PolicyInputs:
    """The tensors behind one tick, for callers without a FrameStack.

    images: uint8 (V, F, H, W, 3) RGB, camera-major, frames oldest -> newest
    history_xyz: (N, 3), history_rot: (N, 3, 3) ego history ending at t0, in the t0 ego frame
    stamps_ns: optional int64 (V, F); with camera_names it keys the vision-embedding cache
    """

    images: Any
    history_xyz: Any
    history_rot: Any
    camera_names: tuple[str, ...] | None = None
    stamps_ns: Any = None
    t0_ns: int | None = None

    @classmethod
    def from_stack(cls, stack: Any) -> "PolicyInputs":
        return cls(images=stack.images, history_xyz=stack.history.xyz, history_rot=stack.history.rot,
                   camera_names=tuple(stack.camera_names), stamps_ns=stack.stamps_ns, t0_ns=int(stack.t0_ns))


def validate_inputs(inp: PolicyInputs, num_cameras: int, num_frames: int, history_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> images uint8 (V, F, H, W, 3), xyz float64 (N, 3), rot float64 (N, 3, 3); PolicyInputError otherwise."""
    images = inp.images.detach().cpu().numpy() if hasattr(inp.images, "detach") else np.asarray(inp.images)
    if images.ndim != 5 or images.shape[-1] != 3:
        raise PolicyInputError(f"images must be (views, frames, H, W, 3), got shape {images.shape}")
    if images.shape[0] != num_cameras or images.shape[1] != num_frames:
        raise PolicyInputError(
            f"the model takes {num_cameras} cameras x {num_frames} frames = {num_cameras * num_frames} images, "
            f"got {images.shape[0]} x {images.shape[1]}")
    if images.dtype != np.uint8:
        raise PolicyInputError(f"images must be uint8 RGB, got {images.dtype}")
    if images.shape[2] < 16 or images.shape[3] < 16:
        raise PolicyInputError(f"images of {images.shape[2]}x{images.shape[3]} are too small (min 16x16)")
    xyz = np.asarray(inp.history_xyz.detach().cpu() if hasattr(inp.history_xyz, "detach") else inp.history_xyz, dtype=np.float64)
    rot = np.asarray(inp.history_rot.detach().cpu() if hasattr(inp.history_rot, "detach") else inp.history_rot, dtype=np.float64)
    if xyz.shape != (history_steps, 3):
        raise PolicyInputError(f"history xyz must have shape ({history_steps}, 3), got {xyz.shape}")
    if rot.shape != (history_steps, 3, 3):
        raise PolicyInputError(f"history rot must have shape ({history_steps}, 3, 3), got {rot.shape}")
    if not (np.all(np.isfinite(xyz)) and np.all(np.isfinite(rot))):
        raise PolicyInputError("ego history contains NaN or inf")
    if inp.stamps_ns is not None and np.asarray(inp.stamps_ns).shape != images.shape[:2]:
        raise PolicyInputError(f"stamps_ns must have shape {images.shape[:2]}, got {np.asarray(inp.stamps_ns).shape}")
    if inp.camera_names is not None and len(inp.camera_names) != images.shape[0]:
        raise PolicyInputError(f"{len(inp.camera_names)} camera names for {images.shape[0]} views")
    return images, xyz, rot
