"""CPU thread budget of the torch runtime in a long-running process.

On a small CPU the node's own threads (message callbacks, the control timer, DDS) need a core
too: when torch's OpenMP workers occupy every core, the control timer waits for one and the
output period jitters by tens of ms. `inference.cpu_threads` leaves cores free.
"""
from __future__ import annotations

import sys


def configure_cpu_threads(threads: int) -> int:
    """Use `threads` intra-op threads (0: keep torch's default); returns the count in effect.
    Also shortens the interpreter's thread switch interval so timers get the GIL promptly
    while inference runs."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    sys.setswitchinterval(0.001)
    return torch.get_num_threads()
