"""Hostile input of every kind the drive node must survive, as real ROS messages (rosbags
type-store objects: they go through the sensing pipeline directly or over DDS), each with the
counter the pipeline must raise for it. Shared by test/test_hostile_input.py,
test/test_node_faults_dds.py and bench/soak.py.
"""
from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np

from vla_ros.ros import messages

HOUR_NS = 3600 * 1_000_000_000
STALE_BACK_NS = 5 * 1_000_000_000  # more than sensing.time_jump_s (1 s) behind the stream
BURST = 500

# kind -> the pipeline counter that must grow: a drop reason, or a camera statistic
# (format_mismatch: decoded by its signature and counted; evicted_over_capacity: the burst).
CAMERA_FAULTS = {
    "corrupt_jpeg": "corrupt",
    "not_an_image": "corrupt",
    "format_mismatch": "format_mismatch",
    "unsupported_format": "unsupported_format",
    "empty": "empty",
    "png_bomb": "too_large",
    "jpeg_bomb": "too_large",
    "future_stamp": "future_stamp",
    "stale_stamp": "stale_stamp",
    "burst": "evicted_over_capacity",
}
RAW_CAMERA_FAULTS = {
    "unknown_encoding": "unsupported_encoding",
    "depth_encoding": "unsupported_encoding",
    "short_data": "wrong_size",
    "raw_bomb": "too_large",
    "future_stamp": "future_stamp",
}
ODOMETRY_FAULTS = {
    "nan_pose": "bad_pose",
    "zero_quaternion": "bad_pose",
    "nan_twist": "bad_pose",
    "future_stamp": "future_stamp",
    "stale_stamp": "stale_stamp",
}


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(width: int = 8000, height: int = 8000) -> bytes:
    """A valid PNG header declaring width x height RGB pixels, with almost no data (69 bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00")) + _png_chunk(b"IEND", b"")


def jpeg_bomb(width: int = 8000, height: int = 8000) -> bytes:
    """A real small JPEG whose frame header (SOF0) is patched to declare width x height."""
    data = bytearray(messages.encode_jpeg(np.zeros((8, 8, 3), dtype=np.uint8)))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)  # marker, length(2), precision(1), then H, W
    return bytes(data)


def truncated_jpeg(jpeg: bytes) -> bytes:
    """`jpeg` cut half-way through its entropy-coded data: the header reads, decoding fails."""
    sos = jpeg.index(b"\xff\xda")
    return jpeg[: sos + (len(jpeg) - sos) // 2]


def camera_fault(kind: str, stamp: int, frame_id: str, jpeg: bytes) -> list[Any]:
    """CompressedImage message(s) of fault `kind` in place of the camera's message stamped
    `stamp` (in line, about the receiver's clock); `jpeg`: a good image of the camera."""
    if kind == "corrupt_jpeg":  # header intact, entropy-coded data cut: fails when decoded
        return [messages.compressed_image(stamp, frame_id, truncated_jpeg(jpeg))]
    if kind == "not_an_image":
        return [messages.compressed_image(stamp, frame_id, bytes(range(256)) * 4)]
    if kind == "format_mismatch":  # says png, is a JPEG
        return [messages.compressed_image(stamp, frame_id, jpeg, fmt="png")]
    if kind == "unsupported_format":
        return [messages.compressed_image(stamp, frame_id, b"BM" + bytes(200), fmt="bmp")]
    if kind == "empty":
        return [messages.compressed_image(stamp, frame_id, b"")]
    if kind == "png_bomb":
        return [messages.compressed_image(stamp, frame_id, png_bomb(), fmt="png")]
    if kind == "jpeg_bomb":
        return [messages.compressed_image(stamp, frame_id, jpeg_bomb())]
    if kind == "future_stamp":
        return [messages.compressed_image(stamp + HOUR_NS, frame_id, jpeg)]
    if kind == "stale_stamp":
        return [messages.compressed_image(stamp - STALE_BACK_NS, frame_id, jpeg)]
    if kind == "burst":  # 500 good images 0.1 ms apart: more than a buffer keeps
        return [messages.compressed_image(stamp + i * 100_000, frame_id, jpeg) for i in range(BURST)]
    raise KeyError(kind)


def raw_camera_fault(kind: str, stamp: int, frame_id: str, pixels: np.ndarray) -> list[Any]:
    """sensor_msgs/Image message(s) of fault `kind` in place of the one stamped `stamp`;
    `pixels`: a good rgb8 (H, W, 3) image."""
    if kind == "unknown_encoding":
        return [messages.raw_image(stamp, frame_id, pixels, "yuv422_weird")]
    if kind == "depth_encoding":
        return [messages.raw_image(stamp, frame_id, pixels[:, :, 0].astype(np.uint16), "16UC1")]
    if kind == "short_data":
        msg = messages.raw_image(stamp, frame_id, pixels, "rgb8")
        msg.data = msg.data[: msg.data.size // 2]
        return [msg]
    if kind == "raw_bomb":  # declares 8000x8000 with 12 bytes of data
        msg = messages.raw_image(stamp, frame_id, np.zeros((1, 4, 3), dtype=np.uint8), "rgb8")
        msg.height, msg.width, msg.step = 8000, 8000, 8000 * 3
        return [msg]
    if kind == "future_stamp":
        return [messages.raw_image(stamp + HOUR_NS, frame_id, pixels, "rgb8")]
    raise KeyError(kind)


def odometry_fault(kind: str, stamp: int) -> Any:
    """A nav_msgs/Odometry message of fault `kind` in place of the one stamped `stamp`."""
    if kind == "nan_pose":
        return messages.odometry(stamp, [float("nan"), 0.0, 0.0], [0.0, 0.0, 0.0, 1.0])
    if kind == "zero_quaternion":
        return messages.odometry(stamp, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0])
    if kind == "nan_twist":
        return messages.odometry(stamp, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], linear=[float("nan"), 0.0, 0.0])
    if kind == "future_stamp":
        return messages.odometry(stamp + HOUR_NS, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0])
    if kind == "stale_stamp":
        return messages.odometry(stamp - STALE_BACK_NS, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0])
    raise KeyError(kind)
