"""The node core for the configured mode: trajectories for a vehicle, joint commands for an arm."""
from __future__ import annotations

from typing import Any

from vla_ros.config import Config
from vla_ros.ros.arm_node_core import ArmNodeCore
from vla_ros.ros.clock import Clock
from vla_ros.ros.node_core import DriveNodeCore, PolicyLike, Publish


def make_node_core(config: Config, policy: PolicyLike, publish: Publish, clock: Clock, **kwargs: Any) -> DriveNodeCore:
    """DriveNodeCore, or ArmNodeCore when `control.mode` is chunk (the vehicle-only keywords,
    `autoware` and `path_encoder`, do not apply to it)."""
    if config.chunk_mode:
        kwargs.pop("path_encoder", None)
        kwargs.pop("autoware", None)
        return ArmNodeCore(config, policy, publish, clock, **kwargs)
    return DriveNodeCore(config, policy, publish, clock, **kwargs)
