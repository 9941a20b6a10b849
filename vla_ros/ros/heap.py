"""The node process's C allocator setting for running for days (glibc; elsewhere nothing changes).

glibc serves a block of 128 KiB or more from its own mapping and returns it to the kernel when it
is freed, but the first time such a block is freed it raises that threshold to the block's size
(up to 32 MiB). From then on the blocks a node allocates and frees on every tick (decoded images
of a few hundred KB, their numpy copies, large message buffers) are cut from the decode and DDS
threads' arenas instead, and those arenas' footprint grows with fragmentation while what is in
use does not: `bench/soak.py` measured +0.5 MB in 12 minutes in the thread arenas with falling
in-use bytes (bench/results/soak-2026-12-04-bisect-f-arenas). Setting the threshold (mallopt
M_MMAP_THRESHOLD, which also turns the raising off) gives each large block its own mapping, taken
from the kernel and given back, so the arenas hold only small ones; the hour's soak then saw their
footprint grow +0.6 MB in the hour instead (bench/results/soak-2026-12-04-hour).
"""
from __future__ import annotations

import ctypes
import logging

_LOG = logging.getLogger("vla_ros.node")

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
LARGE_BLOCK_BYTES = 128 * 1024  # glibc's own initial threshold, kept for good


def keep_large_blocks_out_of_arenas() -> bool:
    """Fix glibc's mmap threshold at LARGE_BLOCK_BYTES for this process; False where the C
    library is not glibc (nothing to do) or refused it."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = bool(mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES))
    if not ok:
        _LOG.warning("glibc refused a fixed mmap threshold; large blocks may fragment the thread arenas")
    return ok
