"""Helpers for tests that write real rosbag2 files."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vla_ros.config import Config, config_from_dict
from vla_ros.replay.pattern_bag import decode_pattern
from vla_ros.replay.tick_replay import replay_ticks
from vla_ros.sensors.frame_stack import FrameStack, StackSkip
from vla_ros.sensors.pipeline import SensingPipeline

SMALL = {"image": {"height": 64, "width": 96}}


def small_config(**overrides) -> Config:
    data = {**SMALL, **overrides}
    return config_from_dict(data)


def replay(bag: Path, config: Config, rate_hz: float = 10.0,
           decode_threads: int | None = None) -> tuple[SensingPipeline, list[tuple[int, FrameStack | StackSkip]]]:
    pipeline = SensingPipeline(config, decode_threads=decode_threads)
    return pipeline, [(t.time_ns, t.result) for t in replay_ticks(bag, pipeline, rate_hz)]


def stacks_of(results) -> list[FrameStack]:
    return [r for _, r in results if isinstance(r, FrameStack)]


def identities(stack: FrameStack) -> np.ndarray:
    """(V, F, 2) decoded (camera index, frame number) of every slot."""
    V, F = stack.images.shape[:2]
    return np.array([[decode_pattern(stack.images[v, f]) for f in range(F)] for v in range(V)])
