"""Contact sheets: one PNG per stack, views as rows and frames as columns, stamps printed, so a
person can see at a glance that each camera and each frame offset landed where it should."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vla_ros.sensors.frame_stack import FrameStack

_LABEL_H = 34
_PAD = 4
_TITLE_H = 30


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def render_contact_sheet(stack: FrameStack, cell_width: int = 288) -> Image.Image:
    V, F, H, W, _ = stack.images.shape
    cell_h = max(int(round(H * cell_width / W)), 1)
    sheet_w = _PAD + F * (cell_width + _PAD) + 110
    sheet_h = _TITLE_H + V * (cell_h + _LABEL_H + _PAD) + _PAD
    sheet = Image.new("RGB", (sheet_w, sheet_h), (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    small, big = _font(12), _font(15)
    draw.text((_PAD, 6), f"t0 = {stack.t0:.3f} s   {V} views x {F} frames, model input {W}x{H}", fill=(240, 240, 240), font=big)
    for v in range(V):
        y = _TITLE_H + v * (cell_h + _LABEL_H + _PAD)
        draw.text((_PAD + F * (cell_width + _PAD) + 4, y + cell_h // 2 - 8), stack.camera_names[v], fill=(250, 210, 90), font=big)
        for f in range(F):
            x = _PAD + f * (cell_width + _PAD)
            tile = Image.fromarray(np.asarray(stack.images[v, f])).resize((cell_width, cell_h), Image.Resampling.BILINEAR)
            sheet.paste(tile, (x, y))
            stamp = stack.stamps[v, f]
            err = stack.slot_error_ms[v, f]
            draw.text((x, y + cell_h + 2), f"{stack.offsets_s[f]:+.2f} s  stamp {stamp:.3f}", fill=(220, 220, 220), font=small)
            colour = (140, 220, 140) if abs(err) < 10 else (240, 180, 80)
            draw.text((x, y + cell_h + 17), f"slot error {err:+.1f} ms", fill=colour, font=small)
    return sheet


def save_contact_sheet(stack: FrameStack, path: str | Path) -> Path:
    p = Path(path)
    render_contact_sheet(stack).save(p, format="PNG", optimize=True)
    return p
