"""The config schema as flat ROS parameters (`frames.count`, `cameras.names`, ...), and back.

The YAML file stays the source of truth: the rclpy node declares one parameter per key with the
file's value as default, so `ros2 param get/list` shows the running configuration, and launch
overrides of single keys are validated by the same schema.
"""
from __future__ import annotations

from typing import Any

from vla_ros.config import DEFAULT_NODE_NAME, Config, ConfigError, config_from_dict

# Camera entries are a list of mappings in YAML; ROS parameters hold them as parallel arrays:
# strings (an empty string stands for an unset optional field) and integers (camera_id; -1 unset).
_CAMERA_FIELDS = ("name", "topic", "camera_info_topic")
_CAMERA_INT_FIELDS = ("camera_id",)


def to_parameters(config: Config) -> dict[str, Any]:
    """Flat {dotted.key: value} (bool, int, float, str, a list of one of them, or None for an
    optional key left unset, which the node declares with dynamic typing as "not set")."""
    data = config.to_dict()
    cameras = data.pop("cameras")
    params: dict[str, Any] = {f"cameras.{field}s": [c[field] or "" for c in cameras] for field in _CAMERA_FIELDS}
    params.update({f"cameras.{field}s": [int(c[field]) for c in cameras] for field in _CAMERA_INT_FIELDS})
    for section, values in data.items():
        params.update(_flatten(values, section))
    return params


def _flatten(values: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Nested sections (`arm.limits`) become dotted keys (`arm.limits.max_velocity`)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}.{key}"))
        else:  # None too: `-p navigation.guidance_weight:=2.0` needs the key declared to override it
            flat[f"{prefix}.{key}"] = value
    return flat


def from_parameters(params: dict[str, Any], namespace: str = "/", node_name: str = DEFAULT_NODE_NAME) -> Config:
    """Inverse of `to_parameters`; validated (ConfigError names the dotted key), topic names
    resolved for a node in `namespace`."""
    data: dict[str, Any] = {}
    columns = {field: list(params.get(f"cameras.{field}s", [])) for field in _CAMERA_FIELDS + _CAMERA_INT_FIELDS}
    names = columns["name"]
    if any(columns.values()):
        for field, values in columns.items():
            if values and len(values) != len(names):
                raise ConfigError(f"cameras.{field}s", f"{len(values)} entries for {len(names)} camera names")
        data["cameras"] = [
            {field: columns[field][i] for field in columns if columns[field] and columns[field][i] != ""} for i in range(len(names))
        ]
    for key, value in params.items():
        if key.startswith("cameras."):
            continue
        *sections, name = key.split(".")
        node = data
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    return config_from_dict(data, namespace, node_name)
