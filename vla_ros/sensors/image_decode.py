"""Decoding sensor_msgs/CompressedImage (JPEG, PNG) and sensor_msgs/Image straight to the model
input size, as RGB uint8 `(H, W, 3)`.

JPEG is decoded at reduced scale (libjpeg DCT scaling through PIL's draft mode) when the target
is at most half the source size, which is most of the cost saving of the sensing pipeline.

Every image's declared size (JPEG SOF / PNG IHDR header, raw `Image` height and width) is checked
against a bound before any pixel is allocated: a 69-byte PNG can declare 8000x8000 pixels.
A failed decode closes its image at once and raises an error that holds no traceback of the
decoder's frames, so nothing large waits for the garbage collector.
"""
from __future__ import annotations

import array
import io
from typing import Any

import numpy as np
from PIL import Image

# Raw encodings accepted, with their channel count and how to get RGB out of them.
RAW_ENCODINGS: dict[str, int] = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1, "8UC3": 3}
# Refused with a reason rather than guessed at.
_REFUSED = {
    "16UC1": "a 16-bit single-channel (depth) image is not camera input",
    "mono16": "16-bit images are not supported as camera input",
    "32FC1": "a float (depth) image is not camera input",
}

# No image side may exceed this, whatever the configuration says (8192x8192 RGB is 192 MiB).
MAX_IMAGE_SIDE = 8192
# The default bound is this many times the model input size, per side (sensing.max_image_width/height).
DEFAULT_BOUND_FACTOR = 4

_JPEG_MAGIC = b"\xff\xd8"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class DecodeError(ValueError):
    """An image message could not be turned into pixels. `kind` is a short, countable reason."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def image_size_bound(size_hw: tuple[int, int], max_width: int = 0, max_height: int = 0) -> tuple[int, int]:
    """The largest (height, width) an input image may declare: the configured bounds, or
    DEFAULT_BOUND_FACTOR x the decode size (`size_hw`) where 0, never above MAX_IMAGE_SIDE."""
    h = max_height or DEFAULT_BOUND_FACTOR * size_hw[0]
    w = max_width or DEFAULT_BOUND_FACTOR * size_hw[1]
    return min(h, MAX_IMAGE_SIDE), min(w, MAX_IMAGE_SIDE)


def check_declared_size(width: int, height: int, max_hw: tuple[int, int] | None, what: str) -> None:
    """Refuse (`too_large`) an image whose declared size exceeds `max_hw` (height, width), or
    MAX_IMAGE_SIDE when no bound is given."""
    max_h, max_w = max_hw or (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE)
    if width > max_w or height > max_h:
        raise DecodeError("too_large", f"{what} declares {width}x{height} pixels, more than the bound {max_w}x{max_h}"
                                       " (sensing.max_image_width/height)")


def as_uint8_buffer(data: Any) -> np.ndarray:
    """A read-only uint8 view of a message's `data` field, whatever the transport made of it
    (bytes from rosbags/DDS, array('B') from rclpy, numpy arrays, lists of ints)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.astype(np.uint8).reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    if isinstance(data, array.array):
        return np.frombuffer(data, dtype=np.uint8) if data.itemsize == 1 else np.asarray(data, dtype=np.uint8)
    try:
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DecodeError("bad_data", f"data field of type {type(data).__name__} is not a byte sequence") from exc


def compressed_format(fmt: str, head: bytes) -> str:
    """'jpeg' or 'png' from the message's `format` field and the payload's magic bytes."""
    f = (fmt or "").lower()
    if "compresseddepth" in f:
        raise DecodeError("unsupported_format", f"compressedDepth images are not camera input (format '{fmt}')")
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if head.startswith(_PNG_MAGIC):
        return "png"
    if not head:
        raise DecodeError("empty", "compressed image has no data")
    if "jpeg" in f or "jpg" in f or "png" in f:
        raise DecodeError("corrupt", f"format says '{fmt}' but the data does not start with its signature")
    raise DecodeError("unsupported_format", f"format '{fmt}' is neither JPEG nor PNG")


def _open_checked(kind: str, buf: np.ndarray, max_hw: tuple[int, int] | None) -> Image.Image:
    """PIL's lazy open (header only, no pixels) with the declared size checked."""
    reason = detail = ""
    try:
        img = Image.open(io.BytesIO(buf.tobytes()))
    except Image.DecompressionBombError as exc:
        reason, detail = "too_large", str(exc)
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad data
        reason, detail = "corrupt", f"header could not be read: {exc or type(exc).__name__}"
    if reason:  # raised outside the handler: the error keeps no link to PIL's exception and frames
        raise DecodeError(reason, f"{kind.upper()} {detail}")
    try:
        check_declared_size(img.width, img.height, max_hw, kind.upper())
    except DecodeError:
        img.close()
        raise
    return img


def compressed_header(fmt: str, data: Any, max_hw: tuple[int, int] | None = None) -> tuple[str, int, int]:
    """('jpeg' | 'png', width, height) of a CompressedImage, read from its header without
    decoding; DecodeError if the header is unreadable or the size is beyond `max_hw`."""
    buf = as_uint8_buffer(data)
    kind = compressed_format(fmt, buf[:8].tobytes())
    img = _open_checked(kind, buf, max_hw)
    width, height = img.size
    img.close()
    return kind, width, height


def format_mismatch(fmt: str, kind: str) -> bool:
    """The `format` field names the other compressed format than the data is (decoded by the
    data's signature, counted)."""
    f = (fmt or "").lower()
    own, other = (("jpeg", "jpg"), ("png",)) if kind == "jpeg" else (("png",), ("jpeg", "jpg"))
    return any(o in f for o in other) and not any(o in f for o in own)


def decode_compressed(fmt: str, data: Any, size_hw: tuple[int, int], max_hw: tuple[int, int] | None = None) -> np.ndarray:
    """CompressedImage payload -> RGB uint8 (H, W, 3) at `size_hw`. The declared size is checked
    against `max_hw` (height, width; default MAX_IMAGE_SIDE per side) before decoding."""
    buf = as_uint8_buffer(data)
    kind = compressed_format(fmt, buf[:8].tobytes())
    h, w = size_hw
    img = _open_checked(kind, buf, max_hw)
    detail = ""
    try:
        if kind == "jpeg":
            # Scales 1/2, 1/4, 1/8 are picked so that the result is still >= the requested size.
            img.draft("RGB", (w, h))
        img.load()
        return _resize_rgb(img, size_hw)
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad data
        detail = str(exc) or type(exc).__name__
    finally:
        img.close()  # frees the pixels now, failed or not (the result is a copy)
    raise DecodeError("corrupt", f"{kind.upper()} could not be decoded: {detail}")


def decode_raw(encoding: str, height: int, width: int, step: int, data: Any, size_hw: tuple[int, int],
               max_hw: tuple[int, int] | None = None) -> np.ndarray:
    """sensor_msgs/Image fields -> RGB uint8 (H, W, 3) at `size_hw`."""
    pixels = raw_pixels(encoding, height, width, step, data, max_hw)
    return _resize_rgb(Image.fromarray(pixels), size_hw)


def check_raw(encoding: str, height: int, width: int, step: int, data_len: int, max_hw: tuple[int, int] | None = None) -> int:
    """Validate raw image geometry cheaply (at receive time), the declared size against `max_hw`
    (height, width; default MAX_IMAGE_SIDE per side); returns channels."""
    if encoding in _REFUSED:
        raise DecodeError("unsupported_encoding", f"encoding '{encoding}': {_REFUSED[encoding]}")
    if encoding not in RAW_ENCODINGS:
        raise DecodeError("unsupported_encoding", f"encoding '{encoding}' is not one of {', '.join(RAW_ENCODINGS)}")
    ch = RAW_ENCODINGS[encoding]
    if height <= 0 or width <= 0:
        raise DecodeError("wrong_size", f"image is {width}x{height}")
    check_declared_size(width, height, max_hw, f"Image ({encoding})")
    if step < width * ch:
        raise DecodeError("wrong_size", f"step {step} < width {width} x {ch} channels")
    if data_len != step * height:
        raise DecodeError("wrong_size", f"data has {data_len} bytes, step x height = {step * height}")
    return ch


def raw_pixels(encoding: str, height: int, width: int, step: int, data: Any, max_hw: tuple[int, int] | None = None) -> np.ndarray:
    """sensor_msgs/Image -> RGB uint8 (height, width, 3) at its own size."""
    buf = as_uint8_buffer(data)
    ch = check_raw(encoding, height, width, step, buf.size, max_hw)
    rows = buf.reshape(height, step)[:, : width * ch].reshape(height, width, ch)
    if ch == 1:
        return np.repeat(rows, 3, axis=2)
    if encoding in ("bgr8", "bgra8", "8UC3"):
        return np.ascontiguousarray(rows[:, :, 2::-1])
    return np.ascontiguousarray(rows[:, :, :3])


def _resize_rgb(img: Image.Image, size_hw: tuple[int, int]) -> np.ndarray:
    h, w = size_hw
    if img.mode != "RGB":
        img = img.convert("RGB")
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(img, dtype=np.uint8)
