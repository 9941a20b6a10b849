"""How many CPU cores this process may use (for worker, thread and decoder counts)."""
from __future__ import annotations

import os


def available_cores() -> int:
    """CPU cores this process may run on (respects affinity masks and container CPU sets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
