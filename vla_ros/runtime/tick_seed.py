"""The seed of one tick's start noise (numpy only: the node imports it without torch).

The node and `vla-ros eval` seed each tick's noise from the run seed (`inference.seed`) and the
tick's t0, so a replayed bag draws the same noise through either, whatever ran before it.
"""
from __future__ import annotations

import numpy as np


def tick_seed(seed: int, t0_ns: int) -> int:
    """A 63-bit seed for the noise at one tick, from the run seed and the tick's t0."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(t0_ns) & 0xFFFFFFFFFFFFFFFF]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])
