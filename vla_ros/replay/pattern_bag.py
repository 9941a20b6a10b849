"""Test-pattern bags: every camera image carries its camera index and frame number in its
pixels, and the ego drives an analytic arc, so anyone can check that the right frame lands in
the right slot of a stack and that the ego history is exact.

Pattern: the top half holds 16 vertical bars, black or white, the bits of the frame number (MSB
first); the bottom half is a flat grey level that encodes the camera index. Both survive JPEG
and strong down-scaling (`decode_pattern`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vla_ros.config import Config
from vla_ros.ros import messages
from vla_ros.replay.bag_io import BagFormat, BagWriter
from vla_ros.sensors.geometry import yaw_to_quat

BITS = 16
_GREY0, _GREY_STEP = 40, 50


def pattern_image(camera_index: int, frame_number: int, height: int, width: int, texture_seed: int | None = None) -> np.ndarray:
    """uint8 (H, W, 3) RGB test pattern. With `texture_seed`, mild noise is added so JPEG sizes
    resemble real camera images (used by the benchmark)."""
    if not 0 <= frame_number < 2**BITS:
        raise ValueError(f"frame number {frame_number} does not fit in {BITS} bits")
    img = np.empty((height, width, 3), dtype=np.uint8)
    bits = [(frame_number >> (BITS - 1 - b)) & 1 for b in range(BITS)]
    edges = np.linspace(0, width, BITS + 1).astype(int)
    top = height // 2
    for b in range(BITS):
        img[:top, edges[b] : edges[b + 1]] = 255 if bits[b] else 0
    img[top:] = _GREY0 + _GREY_STEP * camera_index
    # A colour tag in the bottom-left corner makes red/blue swaps visible (R > B always).
    img[top + (height - top) // 2 :, : max(width // 8, 1)] = (230, 120, 20)
    if texture_seed is not None:
        rng = np.random.default_rng(texture_seed)
        noise = rng.integers(-24, 25, size=(height, width, 1), dtype=np.int16)
        img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return img


def decode_pattern(image: np.ndarray) -> tuple[int, int]:
    """(camera_index, frame_number) from a (possibly resized, JPEG-damaged) pattern image."""
    h, w = image.shape[:2]
    grey = image.astype(np.float64).mean(axis=2)
    top = h // 2
    rows = grey[top // 4 : max(top * 3 // 4, top // 4 + 1)]
    edges = np.linspace(0, w, BITS + 1)
    number = 0
    for b in range(BITS):
        centre = int((edges[b] + edges[b + 1]) / 2)
        number = (number << 1) | int(rows[:, centre].mean() > 127)
    bottom = grey[top + (h - top) // 8 : top + (h - top) // 2, w // 4 :]
    camera = int(round((bottom.mean() - _GREY0) / _GREY_STEP))
    return camera, number


@dataclass(frozen=True)
class ArcMotion:
    """Ego on a circular arc (straight line when yaw_rate is 0) at constant speed, from the origin."""

    speed: float = 10.0  # m/s
    yaw_rate: float = 0.0  # rad/s

    def pose(self, t: float) -> tuple[np.ndarray, float]:
        """Position (3,) and yaw at t seconds."""
        yaw = self.yaw_rate * t
        if abs(self.yaw_rate) < 1e-12:
            return np.array([self.speed * t, 0.0, 0.0]), 0.0
        r = self.speed / self.yaw_rate
        return np.array([r * np.sin(yaw), r * (1 - np.cos(yaw)), 0.0]), yaw


@dataclass(frozen=True)
class PatternBagSpec:
    duration_s: float = 5.0
    camera_hz: float = 10.0
    odom_hz: float = 50.0
    odom_jitter_s: float = 0.003
    camera_skew_s: float = 0.002  # camera v is stamped v * skew after camera 0
    height: int = 320
    width: int = 576
    start_s: float = 1000.0
    motion: ArcMotion = ArcMotion()
    raw_encoding: str = "rgb8"  # for cameras on non-/compressed topics
    compressed_format: str = "jpeg"
    textured: bool = False
    seed: int = 0


def write_pattern_bag(
    path: str | Path,
    config: Config,
    spec: PatternBagSpec = PatternBagSpec(),
    fmt: BagFormat = "mcap",
    overwrite: bool = False,
    keep: Callable[[int, int], bool] | None = None,
    progress: bool = False,
) -> dict[str, int]:
    """Write a test-pattern bag for `config`'s cameras and odometry topic.

    `keep(camera_index, frame_number)` can drop individual frames. Returns messages per topic.
    """
    config = config.resolve_topics()  # bags hold absolute topic names
    rng = np.random.default_rng(spec.seed)
    start_ns = round(spec.start_s * 1e9)
    events: list[tuple[int, int, str, object]] = []  # (log time, order, topic, message)
    n_frames = int(spec.duration_s * spec.camera_hz) + 1
    n_odom = int(spec.duration_s * spec.odom_hz) + 1
    counts: dict[str, int] = {}

    for k in range(n_odom):
        t = k / spec.odom_hz + (rng.uniform(-spec.odom_jitter_s, spec.odom_jitter_s) if k else 0.0)
        xyz, yaw = spec.motion.pose(t)
        stamp = start_ns + round(t * 1e9)
        lin = (spec.motion.speed, 0.0, 0.0)
        msg = messages.odometry(stamp, xyz, yaw_to_quat(yaw), lin, (0.0, 0.0, spec.motion.yaw_rate), config.ego.frame_id, config.ego.child_frame_id)
        events.append((stamp, 0, config.ego.odometry_topic, msg))

    for v, cam in enumerate(config.cameras):
        for k in range(n_frames):
            if keep is not None and not keep(v, k):
                continue
            stamp = start_ns + round((k / spec.camera_hz + v * spec.camera_skew_s) * 1e9)
            img = pattern_image(v, k, spec.height, spec.width, texture_seed=spec.seed * 100003 + v * 7919 + k if spec.textured else None)
            frame_id = f"{cam.name}_optical"
            if cam.compressed:
                data = messages.encode_jpeg(img) if spec.compressed_format == "jpeg" else messages.encode_png(img)
                msg = messages.compressed_image(stamp, frame_id, data, spec.compressed_format)
            else:
                msg = messages.raw_image(stamp, frame_id, _to_encoding(img, spec.raw_encoding), spec.raw_encoding)
            events.append((stamp, 1 + v, cam.topic, msg))

    events.sort(key=lambda e: (e[0], e[1]))
    with BagWriter(path, fmt, overwrite=overwrite) as bag:
        for stamp, _, topic, msg in tqdm(events, desc="writing pattern bag", unit="msg", disable=not progress):
            bag.write(topic, msg, stamp)
            counts[topic] = counts.get(topic, 0) + 1
    return counts


def _to_encoding(rgb: np.ndarray, encoding: str) -> np.ndarray:
    if encoding == "rgb8":
        return rgb
    if encoding == "bgr8":
        return rgb[:, :, ::-1].copy()
    if encoding in ("rgba8", "bgra8"):
        base = rgb if encoding == "rgba8" else rgb[:, :, ::-1]
        alpha = np.full(rgb.shape[:2] + (1,), 255, dtype=np.uint8)
        return np.concatenate([base, alpha], axis=2)
    if encoding == "mono8":
        return rgb.mean(axis=2).astype(np.uint8)
    raise ValueError(f"pattern bags cannot write encoding '{encoding}'")
