"""Qwen-VL image preprocessing in torch (no torchvision, no PIL).

uint8 RGB (H, W, 3) -> resized to a multiple of patch*merge within [min_pixels, max_pixels]
(aspect kept), scaled to [0, 1], normalized with mean/std, cut into patches of
C x temporal_patch x patch x patch values in merge-block order (the order the Qwen3-VL vision
tower and its rotary/position tables expect). A still image fills both temporal slots.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from vla_ros.model.config import ImageConfig


class ImageInputError(ValueError):
    """Images have the wrong count, size, dtype or contain non-finite values."""


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Target (h, w): multiples of `factor`, h*w within [min_pixels, max_pixels], aspect kept."""
    if min(height, width) < 1 or max(height, width) / min(height, width) > 200:
        raise ImageInputError(f"image size {height}x{width} is unusable (empty or aspect ratio > 200)")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


class ImagePreprocessor:
    def __init__(self, cfg: ImageConfig) -> None:
        self.cfg = cfg
        self.factor = cfg.patch_size * cfg.merge_size

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        return smart_resize(height, width, self.factor, self.cfg.min_pixels, self.cfg.max_pixels)

    @property
    def model_input_hw(self) -> tuple[int, int]:
        """(H, W) that an image of the nominal camera resolution is resized to."""
        return self.target_size(self.cfg.nominal_height, self.cfg.nominal_width)

    def tokens_per_image(self, height: int, width: int) -> int:
        h, w = self.target_size(height, width)
        return (h // self.factor) * (w // self.factor)

    def __call__(self, images: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(N, H, W, 3) uint8 -> pixel_values (N * gh * gw, C*Tp*P*P) float32 on `device`,
        grid_thw (N, 3) int64 (CPU). All N images share one size (a FrameStack's do). The uint8
        images go to the device first, so resizing runs there (GPU) on 4x fewer bytes."""
        x = torch.as_tensor(np.ascontiguousarray(images) if isinstance(images, np.ndarray) else images)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ImageInputError(f"images must be (N, H, W, 3) RGB, got shape {tuple(x.shape)}")
        if x.dtype != torch.uint8:
            raise ImageInputError(f"images must be uint8, got {x.dtype}")
        n, height, width, _ = x.shape
        th, tw = self.target_size(height, width)
        x = x.to(device).permute(0, 3, 1, 2).float()  # (N, 3, H, W), 0..255
        if (th, tw) != (height, width):
            x = F.interpolate(x, size=(th, tw), mode="bicubic", antialias=True, align_corners=False).clamp_(0, 255)
        mean = torch.tensor(self.cfg.mean, device=x.device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.cfg.std, device=x.device).view(1, 3, 1, 1) * 255.0
        x = (x - mean) / std
        p, m, tp = self.cfg.patch_size, self.cfg.merge_size, self.cfg.temporal_patch_size
        gh, gw = th // p, tw // p
        # (N, C, gh/m, m, P, gw/m, m, P) -> (N, gh/m, gw/m, m, m, C, P, P): merge-block order
        x = x.reshape(n, 3, gh // m, m, p, gw // m, m, p).permute(0, 2, 5, 3, 6, 1, 4, 7)
        x = x.unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, tp, -1, -1)  # still image: repeat in time
        pixel_values = x.reshape(n * gh * gw, 3 * tp * p * p).contiguous()
        grid = torch.tensor([[1, gh, gw]] * n, dtype=torch.long)
        return pixel_values, grid
