"""ROS 2 message types for Cyclone DDS, generated at run time from the definitions rosbags ships.

ROS 2 with rmw_cyclonedds puts a message `pkg/msg/Name` on the wire as the DDS type
`pkg::msg::dds_::Name_`, a final struct with the .msg fields in order, in XCDR1 (plain CDR). The
IDL classes built here carry exactly that name and layout, so Cyclone DDS registers topics that
ROS 2 peers match. They are used to register topics (type name, type information); the message
bytes themselves are encoded and decoded with rosbags' CDR codec (see `dds_transport`), because
cyclonedds-python maps `sequence<uint8>` to a Python list of ints, far too slow for images.

Also here: conversions between rosbags message objects, these IDL objects and duck-typed
objects with ROS field names.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np
from cyclonedds.idl import IdlStruct, make_idl_struct
from cyclonedds.idl import types as idl
from rosbags.interfaces import Nodetype

from vla_ros.ros.messages import TYPESTORE

# ROS .msg base type -> cyclonedds annotation. ROS 2 `char` is an unsigned byte (rosidl maps it
# to uint8), `byte` is an IDL octet.
_BASE_IDL: dict[str, Any] = {
    "bool": bool,
    "byte": idl.byte,
    "char": idl.uint8,
    "int8": idl.int8,
    "uint8": idl.uint8,
    "int16": idl.int16,
    "uint16": idl.uint16,
    "int32": idl.int32,
    "uint32": idl.uint32,
    "int64": idl.int64,
    "uint64": idl.uint64,
    "float32": idl.float32,
    "float64": idl.float64,
}

# ROS base type -> numpy dtype, for numeric arrays and sequences (what rosbags uses: it reads
# `byte` as int8 and `char` as uint8; on the wire both are one octet).
_BASE_NUMPY: dict[str, np.dtype] = {
    "bool": np.dtype(np.bool_),
    "byte": np.dtype(np.int8),
    "char": np.dtype(np.uint8),
    **{name: np.dtype(name) for name in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")},
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}

_lock = threading.Lock()
_cache: dict[tuple[int, str], type[IdlStruct]] = {}


class UnknownTypeError(KeyError):
    """A message type the type store does not define."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want a readable sentence
        return str(self.args[0]) if self.args else "unknown message type"


def normalize_msgtype(msgtype: str) -> str:
    """'sensor_msgs/CompressedImage' or 'sensor_msgs/msg/CompressedImage' -> the latter."""
    parts = msgtype.strip().strip("/").split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"'{msgtype}' is not a message type name (expected pkg/msg/Name)")
    return "/".join(parts)


def dds_type_name(msgtype: str) -> str:
    """'sensor_msgs/msg/Image' -> 'sensor_msgs::msg::dds_::Image_' (the rmw_cyclonedds convention)."""
    pkg, kind, name = normalize_msgtype(msgtype).split("/")
    return f"{pkg}::{kind}::dds_::{name}_"


def msgtype_from_dds_type_name(type_name: str) -> str:
    """Inverse of `dds_type_name`."""
    parts = type_name.split("::")
    if len(parts) != 4 or parts[2] != "dds_" or not parts[3].endswith("_"):
        raise ValueError(f"'{type_name}' is not a ROS 2 DDS type name (pkg::msg::dds_::Name_)")
    return f"{parts[0]}/{parts[1]}/{parts[3][:-1]}"


def dds_topic_name(topic: str) -> str:
    """'/ego/odom' -> 'rt/ego/odom': ROS 2 prefixes topic names with 'rt' on the DDS side."""
    name = topic.strip()
    if not name or name == "/":
        raise ValueError("empty topic name")
    if name.startswith("rt/"):
        return name
    return "rt/" + name.lstrip("/")


def ros_topic_name(dds_name: str) -> str:
    """'rt/ego/odom' -> '/ego/odom'."""
    if not dds_name.startswith("rt/"):
        raise ValueError(f"'{dds_name}' is not a ROS 2 topic on DDS (no 'rt/' prefix)")
    return "/" + dds_name[3:]


def _fielddefs(msgtype: str, typestore: Any) -> list[tuple[str, tuple]]:
    try:
        return typestore.fielddefs[msgtype][1]
    except KeyError:
        raise UnknownTypeError(f"message type '{msgtype}' is not known (not in the ROS 2 Humble type store or the bag)") from None


def _base_annotation(name: str, bound: int) -> Any:
    if name == "string":
        return idl.bounded_str[bound] if bound else str
    if name == "wstring":
        raise TypeError("wstring fields are not supported by the DDS transport")
    return _BASE_IDL[name]


def _annotation(desc: tuple, typestore: Any) -> Any:
    kind, arg = desc
    if kind == Nodetype.BASE:
        return _base_annotation(*arg)
    if kind == Nodetype.NAME:
        return _build(arg, typestore)
    sub_desc, count = arg
    sub = _annotation(sub_desc, typestore)
    if kind == Nodetype.ARRAY:
        return idl.array[sub, count]
    if kind == Nodetype.SEQUENCE:
        return idl.sequence[sub, count] if count else idl.sequence[sub]
    raise TypeError(f"unsupported field kind {kind!r}")


def _build(msgtype: str, typestore: Any) -> type[IdlStruct]:
    key = (id(typestore), msgtype)
    cls = _cache.get(key)
    if cls is None:
        fields = {name: _annotation(desc, typestore) for name, desc in _fielddefs(msgtype, typestore)}
        pkg, _, name = msgtype.split("/")
        cls = make_idl_struct(f"{pkg}_msg_{name}", dds_type_name(msgtype), fields)
        cls.__msgtype__ = msgtype  # type: ignore[attr-defined]  # lets conversions find the definition
        _cache[key] = cls
    return cls


def idl_class(msgtype: str, typestore: Any = TYPESTORE) -> type[IdlStruct]:
    """The cyclonedds IDL class for a ROS message type (built once, then cached).

    Field names are the ROS field names; `sequence<uint8>` fields are Python lists (cyclonedds'
    mapping), which is why the transport does not use these classes to encode large messages.
    """
    msgtype = normalize_msgtype(msgtype)
    with _lock:
        return _build(msgtype, typestore)


def _to_numpy(value: Any, dtype: np.dtype) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value if value.dtype == dtype else value.astype(dtype)
    if dtype.itemsize == 1 and isinstance(value, (bytes, bytearray, memoryview)):
        return np.frombuffer(value, dtype=dtype)
    if dtype == np.int8:  # byte values may come unsigned (cyclonedds) or signed (rosbags)
        return np.asarray(list(value), dtype=np.int16).astype(np.int8)
    return np.asarray(list(value), dtype=dtype)


def to_rosbags(msg: Any, msgtype: str, typestore: Any = TYPESTORE) -> Any:
    """A rosbags type-store message from anything with the ROS field names: a rosbags message
    (returned as is), an IDL object from `idl_class`, an rclpy message, a SimpleNamespace.
    uint8 data may be bytes, bytearray, memoryview, a list or a numpy array."""
    msgtype = normalize_msgtype(msgtype)
    if getattr(msg, "__msgtype__", None) == msgtype and not isinstance(msg, IdlStruct):
        return msg
    return _to_rosbags(msg, msgtype, typestore)


def _to_rosbags(msg: Any, msgtype: str, typestore: Any) -> Any:
    values = {}
    for name, desc in _fielddefs(msgtype, typestore):
        values[name] = _field_to_rosbags(getattr(msg, name), desc, typestore)
    return typestore.types[msgtype](**values)


def _field_to_rosbags(value: Any, desc: tuple, typestore: Any) -> Any:
    kind, arg = desc
    if kind == Nodetype.BASE:
        base = arg[0]
        if base == "string":
            return str(value)
        if base == "bool":
            return bool(value)
        if base == "byte":  # rosbags packs byte as signed
            return (int(value) + 128) % 256 - 128
        return float(value) if base.startswith("float") else int(value)
    if kind == Nodetype.NAME:
        return _to_rosbags(value, arg, typestore)
    (sub_kind, sub_arg), _ = arg
    if sub_kind == Nodetype.BASE and sub_arg[0] in _BASE_NUMPY:
        return _to_numpy(value, _BASE_NUMPY[sub_arg[0]])
    return [_field_to_rosbags(v, arg[0], typestore) for v in value]


def to_idl(msg: Any, msgtype: str | None = None, typestore: Any = TYPESTORE) -> IdlStruct:
    """An IDL object (class from `idl_class`) from a rosbags message or any object with the ROS
    field names. Slow for large uint8 fields (cyclonedds wants a list of ints there)."""
    msgtype = normalize_msgtype(msgtype or msg.__msgtype__)
    if isinstance(msg, idl_class(msgtype, typestore)):
        return msg
    return _to_idl(msg, msgtype, typestore)


def _to_idl(msg: Any, msgtype: str, typestore: Any) -> IdlStruct:
    cls = idl_class(msgtype, typestore)
    values = {name: _field_to_idl(getattr(msg, name), desc, typestore) for name, desc in _fielddefs(msgtype, typestore)}
    return cls(**values)


def _field_to_idl(value: Any, desc: tuple, typestore: Any) -> Any:
    kind, arg = desc
    if kind == Nodetype.BASE:
        if arg[0] == "byte":  # cyclonedds packs byte (octet) as unsigned
            return int(value) % 256
        return _field_to_rosbags(value, desc, typestore)
    if kind == Nodetype.NAME:
        return _to_idl(value, arg, typestore)
    (sub_kind, sub_arg), _ = arg
    if sub_kind == Nodetype.BASE and sub_arg[0] in _BASE_NUMPY:
        arr = _to_numpy(value, _BASE_NUMPY[sub_arg[0]])
        if sub_arg[0] == "byte":
            arr = arr.view(np.uint8)
        if kind == Nodetype.ARRAY and sub_arg[0] in ("uint8", "byte"):
            return bytearray(arr.tobytes())  # cyclonedds maps uint8[N] and byte[N] to bytearray
        return arr.tolist()
    return [_field_to_idl(v, arg[0], typestore) for v in value]
