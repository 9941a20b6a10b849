"""One evaluated tick, as the evaluator records it and the gallery, the prediction bag, the
summary, the plots and the report read it (its own module: they import it without importing the
evaluator, which imports some of them)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_ros.replay.ground_truth import Future
from vla_ros.replay.metrics import MethodErrors

MODEL = "model"  # the policy's name among the methods compared (beside the baselines)


@dataclass
class TickRecord:
    """One evaluated tick. Positions in the t0 ego frame unless named odom."""

    bag: str
    index: int
    tick_ns: int
    t0_ns: int
    dt_s: float
    pose_t0_xyz: np.ndarray  # (3,) odom
    pose_t0_rot: np.ndarray  # (3, 3) odom
    history_xyz: np.ndarray  # (N, 3)
    future: Future
    pred_xyz: np.ndarray  # (S, T, 3)
    pred_rot: np.ndarray | None  # (S, T, 3, 3)
    baselines: dict[str, np.ndarray]  # name -> (T, 3)
    errors: dict[str, MethodErrors]  # "model" and baseline names
    timings_ms: dict[str, float]
    reasoning: str | None
    front_stamp_ns: int | None = None  # header stamp of the newest front-camera frame in the stack
    front_jpeg: bytes | None = None  # that frame as recorded, full size (gallery ticks only; see gallery.py)
    label_maneuver: str | None = None  # the recorded maneuver label at t0 (driving-world bags)
    navigation: str | None = None  # the navigation instruction in force at the tick (navigation.topic)

    @property
    def ade(self) -> float:
        return self.errors[MODEL].ade
