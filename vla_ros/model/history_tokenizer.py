"""Ego-history tokenizer: 16 poses -> 48 discrete tokens (per-step xyz deltas, binned).

delta[i] = xyz[i+1] - xyz[i] for i < N-1 and delta[N-1] = -xyz[N-1] (the residual from the last
history pose to the t0 origin, ~0 when the history ends at t0), so the positions can be decoded
back from t0. Each axis is clipped to +-range (x, y: range_xy, z: range_z) and binned uniformly.

`history.scheme` "prev_delta_round" is Alpamayo-R1's DeltaTrajectoryTokenizer instead: delta 0
is pose 0 from the origin, delta i = pose i - pose i-1, bin = round(unit * (bins - 1)), computed
in float32 as the reference does (so bins on a rounding edge agree).
"""
from __future__ import annotations

import numpy as np

from vla_ros.model.config import HistoryConfig


class HistoryError(ValueError):
    """The ego history has the wrong shape or is not finite."""


class HistoryTokenizer:
    def __init__(self, cfg: HistoryConfig) -> None:
        self.cfg = cfg
        self._range = np.array([cfg.range_xy, cfg.range_xy, cfg.range_z])

    def check(self, xyz: np.ndarray) -> np.ndarray:
        xyz = np.asarray(xyz, dtype=np.float64)
        if xyz.shape != (self.cfg.steps, 3):
            raise HistoryError(f"ego history xyz must have shape ({self.cfg.steps}, 3), got {xyz.shape}")
        if not np.all(np.isfinite(xyz)):
            raise HistoryError("ego history xyz contains NaN or inf")
        return xyz

    def deltas(self, xyz: np.ndarray) -> np.ndarray:
        """(N, 3) positions in the t0 frame -> (N, 3) deltas."""
        xyz = self.check(xyz)
        nxt = np.concatenate([xyz[1:], np.zeros((1, 3))], axis=0)
        return nxt - xyz

    def encode(self, xyz: np.ndarray) -> np.ndarray:
        """(N, 3) -> (3N,) int64 bin indices in [0, bins), step-major (x0, y0, z0, x1, ...)."""
        if self.cfg.scheme == "prev_delta_round":
            return self._encode_prev_delta_round(self.check(xyz))
        d = np.clip(self.deltas(xyz), -self._range, self._range)
        unit = (d + self._range) / (2 * self._range)  # [0, 1]
        bins = np.floor(unit * self.cfg.bins).astype(np.int64)
        return np.clip(bins, 0, self.cfg.bins - 1).reshape(-1)

    def _encode_prev_delta_round(self, xyz: np.ndarray) -> np.ndarray:
        import torch  # float32 round-half-even exactly as the reference computes it

        p = torch.nn.functional.pad(torch.from_numpy(xyz.astype(np.float32)), [0, 0, 1, 0])
        d = p[1:] - p[:-1]
        lo = torch.tensor(-self._range, dtype=torch.float32)
        hi = torch.tensor(self._range, dtype=torch.float32)
        unit = (d - lo) / (hi - lo)
        return (unit * (self.cfg.bins - 1)).round().long().clamp(0, self.cfg.bins - 1).reshape(-1).numpy()

    def decode(self, bins: np.ndarray) -> np.ndarray:
        """(3N,) bins -> (N, 3) positions (bin centres integrated back from the t0 origin)."""
        b = np.asarray(bins, dtype=np.float64).reshape(self.cfg.steps, 3)
        d = (b + 0.5) / self.cfg.bins * (2 * self._range) - self._range
        xyz = np.zeros((self.cfg.steps, 3))
        xyz[-1] = -d[-1]
        for i in range(self.cfg.steps - 2, -1, -1):
            xyz[i] = xyz[i + 1] - d[i]
        return xyz
