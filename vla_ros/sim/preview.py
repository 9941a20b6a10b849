"""A look at one instant: the four cameras in a 2x2 grid next to a bird's-eye view (ego-aligned,
forward up) of the road, the ego's next seconds of path, traffic and signs, with the ground-truth
sentence underneath."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from vla_ros.sim.camera import RIG
from vla_ros.sim.labels import ground_truth
from vla_ros.sim.record import RecordSpec, validate, world_for
from vla_ros.sim.render import STRIDE, CameraRenderer, GroundGrid, shade_ground
from vla_ros.sim.scene import CAR_COLORS, build_scene
from vla_ros.sim.world import STEP_NS, Timeline

BEV_AHEAD = 100.0  # m shown ahead of the ego
BEV_BEHIND = 20.0
BEV_HALF_WIDTH = 35.0
PATH_SECONDS = 6.0
CAMERA_ORDER = ("cross_left", "front_wide", "cross_right", "front_tele")


def bird_eye(timeline: Timeline, t_ns: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 bird's-eye view; width follows from BEV_HALF_WIDTH."""
    res = (BEV_AHEAD + BEV_BEHIND) / height  # m per pixel
    width = int(round(2 * BEV_HALF_WIDTH / res / STRIDE)) * STRIDE

    def points(v: np.ndarray, u: np.ndarray) -> np.ndarray:
        x = BEV_AHEAD - (v[:, None] + 0.5) * res
        y = BEV_HALF_WIDTH - (u[None, :] + 0.5) * res
        return x + 1j * y

    grid = GroundGrid(points, np.arange(height), width, np.zeros((height, width)))
    scene = build_scene(timeline, t_ns)
    img = np.empty((height, width, 3), dtype=np.uint8)
    shade_ground(grid, scene.road, img.reshape(-1, 3))
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)

    def px(x: float, y: float) -> tuple[float, float]:
        return (BEV_HALF_WIDTH - y) / res, (BEV_AHEAD - x) / res

    def rect(cx: float, cy: float, yaw: float, half_l: float, half_w: float) -> list[tuple[float, float]]:
        c, s = math.cos(yaw), math.sin(yaw)
        return [px(cx + c * a - s * b, cy + s * a + c * b) for a, b in ((half_l, half_w), (half_l, -half_w), (-half_l, -half_w), (-half_l, half_w))]

    ego = timeline.ego_at(t_ns)
    c, s = math.cos(ego["yaw"]), math.sin(ego["yaw"])
    k0 = (t_ns - timeline.start_ns) // STEP_NS
    k1 = min(k0 + int(PATH_SECONDS * 1e9 / STEP_NS), timeline.steps - 1)
    path = [px(c * (x - ego["x"]) + s * (y - ego["y"]), -s * (x - ego["x"]) + c * (y - ego["y"])) for x, y in timeline.ego[k0 : k1 + 1 : 5, :2]]
    if len(path) > 1:
        draw.line(path, fill=(255, 200, 0), width=3)
    for box in scene.boxes:
        if box.kind == "body":
            color = tuple(int(v) for v in box.color)
            draw.polygon(rect(box.center[0], box.center[1], box.yaw, box.half[0], box.half[1]), fill=color, outline=(0, 0, 0))
            if box.braking:
                draw.polygon(rect(box.center[0] - 0.8 * box.half[0] * math.cos(box.yaw), box.center[1] - 0.8 * box.half[0] * math.sin(box.yaw),
                                  box.yaw, 0.2 * box.half[0], box.half[1]), fill=(255, 40, 35))
        elif box.kind == "sign":
            x, y = px(box.center[0], box.center[1])
            draw.ellipse((x - 7, y - 7, x + 7, y + 7), fill=(245, 245, 245), outline=(205, 25, 30), width=2)
            draw.text((x + 9, y - 6), str(box.sign_kph), fill=(0, 0, 0))
    # The ego: base_link is the rear axle; the body spans -0.95 .. 3.75 m.
    draw.polygon(rect(1.4, 0.0, 0.0, 2.35, 0.95), fill=(20, 200, 230), outline=(0, 0, 0))
    for name in CAMERA_ORDER:  # field-of-view wedges, 12 m long
        cam = RIG[name]
        x0, y0 = cam.xyz[0], cam.xyz[1]
        for side in (-1, 1):
            a = math.radians(cam.yaw_deg + side * cam.hfov_deg / 2)
            draw.line([px(x0, y0), px(x0 + 12 * math.cos(a), y0 + 12 * math.sin(a))], fill=(255, 255, 255), width=1)
    return np.asarray(pil)


def render_preview(spec: RecordSpec, time_s: float) -> tuple[np.ndarray, dict[str, Any]]:
    """(image, ground-truth record) of the drive `spec` describes at `time_s` seconds."""
    from vla_ros.config import Config

    validate(spec, Config())
    timeline = world_for(spec)
    t_ns = spec.start_ns + round(time_s * 1e9)
    scene = build_scene(timeline, t_ns)
    views = [CameraRenderer(RIG[n], spec.width, spec.height).render(scene) for n in CAMERA_ORDER]
    h, w = spec.height, spec.width
    bev = bird_eye(timeline, t_ns, 2 * h)
    band = 28
    canvas = Image.new("RGB", (2 * w + bev.shape[1] + 4, 2 * h + band + 2), (15, 15, 15))
    draw = ImageDraw.Draw(canvas)
    for i, (name, img) in enumerate(zip(CAMERA_ORDER, views)):
        x, y = (i % 2) * (w + 1), (i // 2) * (h + 1)
        canvas.paste(Image.fromarray(img), (x, y))
        draw.text((x + 6, y + 4), f"{name} ({RIG[name].hfov_deg:g} deg)", fill=(255, 255, 255))
    canvas.paste(Image.fromarray(bev), (2 * w + 4, 0))
    k = int((t_ns - timeline.start_ns) // STEP_NS)
    gt = ground_truth(timeline, k)
    draw.text(
        (6, 2 * h + 8),
        f"t={time_s:.1f}s  seed {spec.seed}  {gt['scenario']}  {gt['ego']['speed'] * 3.6:.0f} km/h (limit {gt['road']['speed_limit_kph']})  |  {gt['reasoning']}",
        fill=(255, 255, 255),
    )
    return np.asarray(canvas), gt


def save_preview(path: str | Path, spec: RecordSpec, time_s: float) -> dict[str, Any]:
    img, gt = render_preview(spec, time_s)
    Image.fromarray(img).save(path, format="PNG")
    return gt
