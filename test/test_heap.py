"""The node's fixed glibc mmap threshold (vla_ros/ros/heap.py), in fresh processes: without it a
300 KB block allocated after a 600 KB one was freed is cut from the heap (glibc raised its
threshold); with it the block has its own mapping, which goes back to the kernel when freed."""
from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import pytest

PROBE = """
import ctypes, json, sys
from vla_ros.ros.heap import keep_large_blocks_out_of_arenas

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

info = ctypes.CDLL(None).mallinfo2
info.restype = Info
fixed = keep_large_blocks_out_of_arenas() if sys.argv[1] == "fixed" else None
first = bytearray(600_000)
del first  # a large block freed: glibc would raise its threshold to 600 KB here
before = info().hblkhd
block = bytearray(300_000)
mapped = info().hblkhd - before
del block
print(json.dumps({"fixed": fixed, "mapped": mapped, "after_free": info().hblkhd - before}))
"""


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
        return True
    except AttributeError:
        return False


def _probe(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(not _glibc(), reason="the mmap threshold is glibc's")
def test_large_blocks_get_their_own_mapping_only_with_the_fixed_threshold() -> None:
    default = _probe("default")
    assert default["mapped"] == 0  # glibc's raised threshold: the block is cut from the heap
    fixed = _probe("fixed")
    assert fixed["fixed"] is True
    assert fixed["mapped"] >= 300_000 and fixed["after_free"] == 0  # mapped for it, returned on free
