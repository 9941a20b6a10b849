"""Digits for speed-limit signs and the numbers painted on the road: a 5x7 bitmap font and the
sign face texture (white disc, red ring, black number)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

_FONT = {
    "0": ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    "1": ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    "2": ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    "3": ("11110", "00001", "00001", "01110", "00001", "00001", "11110"),
    "4": ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    "5": ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    "6": ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    "7": ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    "8": ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    "9": ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
}


def text_bitmap(text: str) -> np.ndarray:
    """(7, 6 * len - 1) bool: the digits of `text` side by side, one blank column between."""
    cols = []
    for i, ch in enumerate(text):
        if i:
            cols.append(np.zeros((7, 1), dtype=bool))
        cols.append(np.array([[c == "1" for c in row] for row in _FONT[ch]], dtype=bool))
    return np.concatenate(cols, axis=1)


@lru_cache(maxsize=32)
def sign_texture(kph: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """((size, size, 3) float32 RGB, (size, size) bool alpha) of a round speed-limit sign."""
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(xx + 0.5 - size / 2, yy + 0.5 - size / 2) / (size / 2)
    rgb = np.empty((size, size, 3), dtype=np.float32)
    rgb[:] = (245, 245, 245)
    rgb[(r > 0.78) & (r <= 1.0)] = (205, 25, 30)
    bits = text_bitmap(str(kph))
    h, w = bits.shape
    scale = max(1, int(size * 0.56 / max(w, h * 0.8)))
    big = np.kron(bits, np.ones((scale, scale), dtype=bool))
    y0 = (size - big.shape[0]) // 2
    x0 = (size - big.shape[1]) // 2
    region = rgb[y0 : y0 + big.shape[0], x0 : x0 + big.shape[1]]
    region[big] = (20, 20, 20)
    return rgb, r <= 1.0


@lru_cache(maxsize=32)
def road_number(kph: int) -> np.ndarray:
    """(7, W) float32 paint mask of a number painted on the road (rows: far to near)."""
    return text_bitmap(str(kph)).astype(np.float32)
