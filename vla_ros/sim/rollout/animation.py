"""The animation of an episode: a bird's-eye view (forward up, the ego at the bottom third) beside
the front camera with the path being followed drawn into both, one frame per 100 ms of sim time.

Encoded to H.264 MP4 by the ffmpeg that the `imageio-ffmpeg` package ships; without it, an
animated WebP (Pillow) at half size. Frames are streamed to the encoder, not kept.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from vla_ros.sim.camera import CameraSpec, project
from vla_ros.sim.road import EDGE_D, SHOULDER, Road
from vla_ros.sim.rollout.follower import TimedPath
from vla_ros.sim.rollout.footprint import ego_rect
from vla_ros.sim.rollout.scoring import vehicle_rect

_LOG = logging.getLogger("vla_ros.rollout")
FPS = 10
BEV = 320  # px, square
PX_PER_M = 4.0  # 80 m of road over the view's height
EGO_ROW = BEV * 0.8  # the ego sits a fifth of the view above the bottom edge
GRASS, ASPHALT, PAINT = (88, 122, 62), (96, 96, 102), (235, 235, 228)
PATH_COLOR, EXPERT_COLOR, EGO_COLOR, CAR_COLOR, FALLBACK_COLOR = (40, 110, 235), (40, 170, 70), (250, 250, 250), (200, 60, 50), (235, 150, 20)


class AnimationWriter:
    def __init__(self, out_dir: Path, spec: Any, road: Road, camera: CameraSpec, reference: Any = None) -> None:
        self.out_dir = out_dir
        self.road = road
        self.camera = camera
        self.width, self.height = spec.width, spec.height
        self.size = (BEV + spec.width, max(BEV, spec.height))
        self.ref_xy = None
        if reference is not None:
            self.ref_xy = np.stack([reference.field("x"), reference.field("y")], axis=1)[::5]
        self._frames: list[Image.Image] = []
        self._writer = None
        self.name = ""
        try:
            import imageio_ffmpeg

            self.name = "animation.mp4"
            self._writer = imageio_ffmpeg.write_frames(
                str(out_dir / self.name), self.size, fps=FPS, codec="libx264", pix_fmt_out="yuv420p", macro_block_size=8,
                ffmpeg_log_level="error", output_params=["-threads", "1", "-crf", "26", "-preset", "veryfast"])
            self._writer.send(None)  # start ffmpeg
        except (ImportError, OSError, RuntimeError) as exc:
            _LOG.info("no H.264 encoder (%s): writing an animated WebP", exc)
            self._writer = None
            self.name = "animation.webp"

    def add(self, t_ns: int, step: int, ego: dict[str, float], traffic: Any, front_rgb: np.ndarray | None,
            path: TimedPath | None, following: bool, fallback: bool) -> None:
        frame = Image.new("RGB", self.size, (20, 20, 20))
        frame.paste(self._bev(ego, traffic, path, fallback), (0, 0))
        if front_rgb is not None:
            frame.paste(self._camera(front_rgb, ego, path, fallback), (BEV, 0))
        d = ImageDraw.Draw(frame)
        who = "FALLBACK (stopping)" if fallback else ("node in control" if following else "expert warm-up")
        d.text((6, 6), f"t {(t_ns - 1_000_000_000_000) / 1e9:5.1f} s  {ego['v'] * 3.6:5.1f} km/h  {who}", fill=(255, 255, 255))
        if self._writer is not None:
            self._writer.send(np.ascontiguousarray(np.asarray(frame)))
        else:
            self._frames.append(frame.resize((self.size[0] // 2, self.size[1] // 2)))

    def close(self) -> str:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            return self.name
        if self._frames:
            self._frames[0].save(self.out_dir / self.name, save_all=True, append_images=self._frames[1:], duration=1000 // FPS, loop=0)
            self._frames = []
            return self.name
        return ""

    # -- drawing ----------------------------------------------------------------------------

    def _to_px(self, ego: dict[str, float], xy: np.ndarray) -> list[tuple[float, float]]:
        c, s = math.cos(ego["yaw"]), math.sin(ego["yaw"])
        dx, dy = xy[:, 0] - ego["x"], xy[:, 1] - ego["y"]
        fwd, left = c * dx + s * dy, -s * dx + c * dy
        return list(zip(BEV / 2 - left * PX_PER_M, EGO_ROW - fwd * PX_PER_M))

    def _bev(self, ego: dict[str, float], traffic: Any, path: TimedPath | None, fallback: bool) -> Image.Image:
        img = Image.new("RGB", (BEV, BEV), GRASS)
        d = ImageDraw.Draw(img)
        road = self.road
        s = np.arange(max(ego["s"] - 40.0, 0.0), min(ego["s"] + 110.0, road.length), 1.0)
        centre = np.array([road.centre(float(v)) for v in s])
        normal = np.stack([-np.sin(centre[:, 2]), np.cos(centre[:, 2])], axis=1)
        at = lambda off: centre[:, :2] + off * normal  # noqa: E731
        half = EDGE_D + SHOULDER
        d.polygon(self._to_px(ego, at(half)) + self._to_px(ego, at(-half))[::-1], fill=ASPHALT)
        for off in (EDGE_D, -EDGE_D):
            d.line(self._to_px(ego, at(off)), fill=PAINT, width=1)
        mid = self._to_px(ego, at(0.0))
        for i in range(0, len(mid) - 4, 12):  # dashes: 4 m every 12 m
            d.line(mid[i:i + 4], fill=PAINT, width=1)
        if self.ref_xy is not None:
            d.line(self._to_px(ego, self.ref_xy), fill=EXPERT_COLOR, width=1)
        for veh in traffic:
            d.polygon(self._to_px(ego, vehicle_rect(veh).corners()), fill=CAR_COLOR, outline=(30, 30, 30))
        if path is not None and len(path) >= 2:
            d.line(self._to_px(ego, path.xy), fill=FALLBACK_COLOR if fallback else PATH_COLOR, width=3)
        d.polygon(self._to_px(ego, ego_rect(ego["x"], ego["y"], ego["yaw"]).corners()), fill=EGO_COLOR, outline=(0, 0, 0))
        return img

    def _camera(self, rgb: np.ndarray, ego: dict[str, float], path: TimedPath | None, fallback: bool) -> Image.Image:
        img = Image.fromarray(rgb)
        if path is None or len(path) < 2:
            return img
        c, s = math.cos(ego["yaw"]), math.sin(ego["yaw"])
        dx, dy = path.xy[:, 0] - ego["x"], path.xy[:, 1] - ego["y"]
        pts = np.stack([c * dx + s * dy, -s * dx + c * dy, np.zeros(len(dx))], axis=1)
        uv, z = project(self.camera, self.width, self.height, pts)
        ok = (z > 0.5) & np.isfinite(uv).all(axis=1)
        line = [tuple(p) for p in np.clip(uv[ok], -1e4, 1e4)]
        if len(line) >= 2:
            ImageDraw.Draw(img).line(line, fill=FALLBACK_COLOR if fallback else PATH_COLOR, width=3)
        return img
