"""Copying vla_ros's message objects (rosbags type-store classes, ROS field names) into rclpy
messages. Needs a ROS 2 installation; imported only by the rclpy node."""
from __future__ import annotations

import dataclasses
import importlib
from functools import lru_cache
from typing import Any

import numpy as np


@lru_cache(maxsize=None)
def rclpy_class(msgtype: str) -> type:
    """'nav_msgs/msg/Path' (or 'nav_msgs/Path') -> the generated rclpy class nav_msgs.msg.Path."""
    parts = msgtype.split("/")
    pkg, name = parts[0], parts[-1]
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def to_rclpy(obj: Any) -> Any:
    """A type-store message -> an equal rclpy message (recursively)."""
    return _fill(rclpy_class(obj.__msgtype__)(), obj)


def _fill(target: Any, src: Any) -> Any:
    for field in dataclasses.fields(src):
        if field.name.startswith("__"):
            continue
        value = getattr(src, field.name)
        if hasattr(value, "__msgtype__"):
            setattr(target, field.name, _fill(rclpy_class(value.__msgtype__)(), value))
        elif isinstance(value, list) and value and hasattr(value[0], "__msgtype__"):
            cls = rclpy_class(value[0].__msgtype__)
            setattr(target, field.name, [_fill(cls(), v) for v in value])
        elif isinstance(value, np.ndarray):
            # rclpy accepts array.array / bytes for numeric sequences; numpy needs a plain copy
            setattr(target, field.name, value.tobytes() if value.dtype == np.uint8 else value.tolist())
        else:
            setattr(target, field.name, value)
    return target
