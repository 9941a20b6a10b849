"""The node core for the configured mode: trajectories for a vehicle, joint commands for an arm."""
from __future__ import annotations

from typing import Any

from vla_ros.config import Config, ConfigError
from vla_ros.model.config import MAX_CAMERAS
from vla_ros.ros.arm_node_core import ArmNodeCore
from vla_ros.ros.clock import Clock
from vla_ros.ros.node_core import DriveNodeCore, PolicyLike, Publish


def check_policy_fits(config: Config, policy: Any) -> None:
    """ConfigError naming the key when the model cannot serve the configured mode: a vehicle's
    trajectories from a robot policy, an arm's chunks from a driving model, other joint counts
    or another number of cameras, a navigation topic for a model without navigation, cameras
    without the ids a model's prompt names them by. (A policy that does not say is not checked.)"""
    dims = getattr(policy, "robot_dims", None)
    if config.chunk_mode and dims is None:
        raise ConfigError("control.mode", "chunk, but the model drives a path (a vehicle model); use control.mode trajectory, "
                                          "or a robot policy such as a LeRobot pi0 / pi0.5 directory")
    if not config.chunk_mode and dims is not None:
        raise ConfigError("control.mode", "trajectory, but the model outputs action chunks for a robot (pi0 / pi0.5); set "
                                          "control.mode: chunk and the arm section (config/arm.yaml is an example)")
    joints = len(config.arm.joint_names)
    if dims is not None and tuple(dims) != (joints, joints):
        raise ConfigError("arm.joint_names", f"names {joints} joints, the model takes a state of {dims[0]} and outputs "
                                             f"{dims[1]} actions per step")
    check_prompt_inputs(config, getattr(policy, "takes_navigation", True), getattr(policy, "needs_camera_ids", False))
    model_config = getattr(policy, "config", None)
    cameras = getattr(getattr(model_config, "image", None), "num_cameras", None)
    if getattr(policy, "variable_cameras", False):
        if len(config.cameras) > MAX_CAMERAS:
            raise ConfigError("cameras", f"lists {len(config.cameras)} cameras, the model takes at most {MAX_CAMERAS}")
    elif isinstance(cameras, int) and cameras != len(config.cameras):
        raise ConfigError("cameras", f"lists {len(config.cameras)} cameras, the model takes {cameras} (in its order)")


def check_prompt_inputs(config: Config, takes_navigation: bool, needs_camera_ids: bool) -> None:
    """ConfigError naming the key when the config feeds a navigation instruction to a model that
    takes none, or leaves out the camera ids a model's prompt names the cameras by (the node and
    `vla-ros eval` both check this before the first tick)."""
    if config.navigation.topic and not takes_navigation:
        raise ConfigError("navigation.topic", f"is {config.navigation.topic!r}, but the model takes no navigation instruction "
                                              "(Alpamayo 1.5 releases do); set it to \"\"")
    if needs_camera_ids:
        previous = -1
        for i, cam in enumerate(config.cameras):
            if cam.camera_id < 0:
                raise ConfigError(f"cameras[{i}].camera_id", f"is not given for {cam.name!r}; the model's prompt names each "
                                                             "camera by its index (Alpamayo 1.5: 0 cross left, 1 front wide, "
                                                             "2 cross right, 3 rear left, 4 rear tele, 5 rear right, 6 front tele)")
            # the reference's data loader sorts the cameras by index: the model saw them in that order
            if cam.camera_id <= previous:
                raise ConfigError(f"cameras[{i}].camera_id", f"is {cam.camera_id} after {previous}: list the cameras in "
                                                             "ascending camera_id order, each id once (the order the model "
                                                             "was trained with)")
            previous = cam.camera_id


def make_node_core(config: Config, policy: PolicyLike, publish: Publish, clock: Clock, **kwargs: Any) -> DriveNodeCore:
    """DriveNodeCore, or ArmNodeCore when `control.mode` is chunk (the vehicle-only keywords,
    `autoware` and `path_encoder`, do not apply to it). ConfigError when the model does not fit."""
    check_policy_fits(config, policy)
    if config.chunk_mode:
        kwargs.pop("path_encoder", None)
        kwargs.pop("autoware", None)
        return ArmNodeCore(config, policy, publish, clock, **kwargs)
    return DriveNodeCore(config, policy, publish, clock, **kwargs)
