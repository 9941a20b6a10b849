"""Copying vla_ros's message objects (rosbags type-store classes, ROS field names) into rclpy
messages. Needs a ROS 2 installation; imported only by the rclpy node.

The copy walks each rclpy class's own field table (`get_fields_and_field_types`), so message
constants (DiagnosticStatus.OK, ...) are never touched and every field gets the Python type
rclpy's setter wants: `byte` (octet) as bytes, uint8 sequences as bytes, nested messages as instances.
"""
from __future__ import annotations

import importlib
import re
from functools import lru_cache
from typing import Any

import numpy as np

_SEQUENCE = re.compile(r"^sequence<(.+?)(?:,\s*\d+)?>$")
_ARRAY = re.compile(r"^(.+)\[(\d+)\]$")


@lru_cache(maxsize=None)
def rclpy_class(msgtype: str) -> type:
    """'nav_msgs/msg/Path' (or 'nav_msgs/Path') -> the generated rclpy class nav_msgs.msg.Path."""
    parts = msgtype.split("/")
    pkg, name = parts[0], parts[-1]
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


@lru_cache(maxsize=None)
def _fields(cls: type) -> tuple[tuple[str, str], ...]:
    return tuple(cls.get_fields_and_field_types().items())


def to_rclpy(obj: Any) -> Any:
    """A type-store message (or any object with the ROS field names) -> an equal rclpy message."""
    return _message(rclpy_class(obj.__msgtype__), obj)


def _message(cls: type, src: Any) -> Any:
    target = cls()
    for name, ftype in _fields(cls):
        setattr(target, name, _value(ftype, getattr(src, name)))
    return target


def _value(ftype: str, value: Any) -> Any:
    seq = _SEQUENCE.match(ftype) or _ARRAY.match(ftype)
    if seq:
        return _elements(seq.group(1), value)
    if "/" in ftype:  # a nested message, e.g. 'std_msgs/Header'
        return _message(rclpy_class(ftype), value)
    if ftype in ("octet", "byte"):  # .msg `byte`: rclpy wants a one-byte bytes object
        return bytes([int(value) & 0xFF]) if not isinstance(value, (bytes, bytearray)) else bytes(value)
    if ftype in ("float", "double"):
        return float(value)
    if ftype == "boolean":
        return bool(value)
    if ftype.startswith(("string", "wstring")):  # also bounded strings, 'string<8>'
        return str(value)
    return int(value)  # the integer types and char


def _elements(etype: str, values: Any) -> Any:
    if "/" in etype:
        return [_message(rclpy_class(etype), v) for v in values]
    if etype in ("uint8", "char"):
        return bytes(np.asarray(values, dtype=np.uint8).tobytes()) if not isinstance(values, (bytes, bytearray)) else bytes(values)
    if etype in ("octet", "byte"):
        return [bytes([int(v) & 0xFF]) for v in values]
    if etype.startswith(("string", "wstring")):
        return [str(v) for v in values]
    if etype == "boolean":
        return [bool(v) for v in values]
    if etype in ("float", "double"):
        return np.asarray(values, dtype=np.float64).tolist()  # ints in a double array are fine in ROS, not in rclpy
    return np.asarray(values, dtype=np.int64).tolist()
