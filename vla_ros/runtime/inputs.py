"""What a policy takes: the inputs of one tick and their validation (outputs: `output.py`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_ros.model.config import MAX_CAMERAS


class PolicyInputError(ValueError):
    """An input to the policy has the wrong count, shape, dtype or non-finite values."""


class RouteRefusedError(PolicyInputError):
    """The model's prompt refuses this navigation instruction (special tokens, too long): a
    node clears it and drives without one from the next tick."""


@dataclass(frozen=True)
class PolicyInputs:
    """The tensors behind one tick, for callers without a FrameStack.

    images: uint8 (V, F, H, W, 3) RGB, camera-major, frames oldest -> newest (families fed a
        robot state also take float in [0, 1], as LeRobot feeds cameras)
    history_xyz: (N, 3), history_rot: (N, 3, 3) ego history ending at t0, in the t0 ego frame
        (families that drive a path; None for the others)
    stamps_ns: optional int64 (V, F); with camera_names it keys the vision-embedding cache
    state: (state_dim,) robot state and task: the language instruction (families with
        `robot_state_dim`, e.g. pi0 / pi0.5; None for the others)
    task: for a vehicle model that takes navigation (Alpamayo 1.5, `Policy.takes_navigation`),
        the navigation instruction ("Turn right in 30m"); None or blank: none
    camera_ids: each camera's index in stack order (models whose prompt names the cameras,
        `Policy.needs_camera_ids`; Alpamayo 1.5: 0 front left, 1 front, 2 front right, 3 rear
        left, 4 rear, 5 rear right, 6 front telephoto)
    """

    images: Any
    history_xyz: Any = None
    history_rot: Any = None
    camera_names: tuple[str, ...] | None = None
    stamps_ns: Any = None
    t0_ns: int | None = None
    state: Any = None
    task: str | None = None
    camera_ids: tuple[int, ...] | None = None

    @classmethod
    def from_stack(cls, stack: Any, task: str | None = None,
                   camera_ids: tuple[int, ...] | None = None) -> "PolicyInputs":
        """A vehicle's stack (ego history; `task`: a navigation instruction, `camera_ids`: each
        camera's index) or an arm's (joint state at t0; `task`: its instruction)."""
        common = dict(images=stack.images, camera_names=tuple(stack.camera_names), stamps_ns=stack.stamps_ns,
                      t0_ns=int(stack.t0_ns), task=task,
                      camera_ids=None if camera_ids is None else tuple(int(c) for c in camera_ids))
        joints = getattr(stack, "joint_state", None)
        if joints is not None:
            return cls(**common, state=np.asarray(joints.positions, dtype=np.float32))
        return cls(**common, history_xyz=stack.history.xyz, history_rot=stack.history.rot)


def validate_camera_ids(inp: PolicyInputs, num_cameras: int, needed: bool) -> tuple[int, ...] | None:
    """-> the camera indices (one per camera, distinct, >= 0) when the model's prompt names the
    cameras; PolicyInputError when they are missing or malformed."""
    if not needed:
        return None
    if inp.camera_ids is None:
        raise PolicyInputError("this model's prompt names each camera: give each camera's index in stack order "
                               "(PolicyInputs camera_ids=, e.g. (0, 1, 2, 6))")
    try:
        ids = tuple(int(c) for c in inp.camera_ids)
    except (TypeError, ValueError):
        raise PolicyInputError(f"camera_ids must be integers, got {inp.camera_ids!r}") from None
    if len(ids) != num_cameras:
        raise PolicyInputError(f"{len(ids)} camera ids for {num_cameras} cameras")
    if min(ids) < 0 or len(set(ids)) != len(ids):
        raise PolicyInputError(f"camera_ids must be distinct and >= 0, got {ids}")
    return ids


def validate_navigation(inp: PolicyInputs, takes_navigation: bool) -> str | None:
    """-> the navigation instruction (None when absent or blank); PolicyInputError for a model
    that takes none, or a non-string."""
    if inp.task is None or (isinstance(inp.task, str) and not inp.task.strip()):
        return None
    if not isinstance(inp.task, str):
        raise PolicyInputError(f"the navigation instruction (task) must be a string, got {type(inp.task).__name__}")
    if not takes_navigation:
        raise PolicyInputError("this model takes no navigation instruction (task); leave it unset")
    return inp.task


def validate_robot_inputs(inp: PolicyInputs, state_dim: int) -> tuple[np.ndarray, str]:
    """-> state float32 (state_dim,), task; PolicyInputError otherwise."""
    if inp.state is None or inp.task is None:
        raise PolicyInputError("this model takes a robot state and a task instruction (PolicyInputs state=, task=)")
    state = np.asarray(inp.state.detach().cpu() if hasattr(inp.state, "detach") else inp.state, dtype=np.float32)
    if state.shape != (state_dim,):
        raise PolicyInputError(f"state must have shape ({state_dim},), got {state.shape}")
    if not np.all(np.isfinite(state)):
        raise PolicyInputError("state contains NaN or inf")
    if not isinstance(inp.task, str):
        raise PolicyInputError(f"task must be a string, got {type(inp.task).__name__}")
    return state, inp.task


def validate_inputs(inp: PolicyInputs, num_cameras: int, num_frames: int, history_steps: int,
                    float_images: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> images uint8 (V, F, H, W, 3) (or float32 in [0, 1] when float_images), xyz float64
    (N, 3), rot float64 (N, 3, 3); num_cameras 0: any count up to MAX_CAMERAS; history_steps 0:
    no history (empty arrays). PolicyInputError otherwise."""
    images = inp.images.detach().cpu().numpy() if hasattr(inp.images, "detach") else np.asarray(inp.images)
    if images.ndim != 5 or images.shape[-1] != 3:
        raise PolicyInputError(f"images must be (views, frames, H, W, 3), got shape {images.shape}")
    if num_cameras == 0:  # a variable-camera model: 1..MAX_CAMERAS
        if not 1 <= images.shape[0] <= MAX_CAMERAS or images.shape[1] != num_frames:
            raise PolicyInputError(f"the model takes 1 to {MAX_CAMERAS} cameras x {num_frames} frames, "
                                   f"got {images.shape[0]} x {images.shape[1]}")
    elif images.shape[0] != num_cameras or images.shape[1] != num_frames:
        raise PolicyInputError(
            f"the model takes {num_cameras} cameras x {num_frames} frames = {num_cameras * num_frames} images, "
            f"got {images.shape[0]} x {images.shape[1]}")
    if float_images and images.dtype.kind == "f":
        images = images.astype(np.float32, copy=False)
        if not (np.all(np.isfinite(images)) and images.min() >= 0.0 and images.max() <= 1.0):
            raise PolicyInputError("float images must be finite and in [0, 1]")
    elif images.dtype != np.uint8:
        raise PolicyInputError(f"images must be uint8 RGB{' or float in [0, 1]' if float_images else ''}, got {images.dtype}")
    if images.shape[2] < 16 or images.shape[3] < 16:
        raise PolicyInputError(f"images of {images.shape[2]}x{images.shape[3]} are too small (min 16x16)")
    if inp.stamps_ns is not None and np.asarray(inp.stamps_ns).shape != images.shape[:2]:
        raise PolicyInputError(f"stamps_ns must have shape {images.shape[:2]}, got {np.asarray(inp.stamps_ns).shape}")
    if inp.camera_names is not None and len(inp.camera_names) != images.shape[0]:
        raise PolicyInputError(f"{len(inp.camera_names)} camera names for {images.shape[0]} views")
    if history_steps == 0:  # families fed a robot state instead of an ego history
        xyz, rot = np.zeros((0, 3)), np.zeros((0, 3, 3))
        return images, xyz, rot
    if inp.history_xyz is None or inp.history_rot is None:
        raise PolicyInputError("this model takes an ego history (history_xyz, history_rot)")
    xyz = np.asarray(inp.history_xyz.detach().cpu() if hasattr(inp.history_xyz, "detach") else inp.history_xyz, dtype=np.float64)
    rot = np.asarray(inp.history_rot.detach().cpu() if hasattr(inp.history_rot, "detach") else inp.history_rot, dtype=np.float64)
    if xyz.shape != (history_steps, 3):
        raise PolicyInputError(f"history xyz must have shape ({history_steps}, 3), got {xyz.shape}")
    if rot.shape != (history_steps, 3, 3):
        raise PolicyInputError(f"history rot must have shape ({history_steps}, 3, 3), got {rot.shape}")
    if not (np.all(np.isfinite(xyz)) and np.all(np.isfinite(rot))):
        raise PolicyInputError("ego history contains NaN or inf")
    return images, xyz, rot
