#!/usr/bin/env python3
"""Run `vla-ros node ...` under tracemalloc, for `bench/soak.py --trace-python` (not product code).

    python bench/soak_trace_node.py --out DIR [--warmup-s 180] [--every-s 300] -- node --transport dds ...

Same process as a plain `python -m vla_ros.cli node ...` (same pid, same signals; the policy's
spawned child is not traced). A thread in it:
- every --sample-every seconds appends one line to DIR/trace.jsonl: seconds since start, memory
  traced by Python (tracemalloc), the C allocator's in-use bytes and its arenas' total
  (glibc mallinfo2: what malloc handed out and did not get back, native or large Python blocks),
  Python's small-object allocator's arenas and the bytes in use in them (pymalloc: 1 MiB mmapped
  arenas, given back only when empty), and RSS;
- when the file --baseline-when appears (bench/soak.py creates it at the end of its warm-up), or
  without one at --warmup-s, takes a baseline snapshot (and the count of live objects by type);
  every --every-s after that writes DIR/tracemalloc-MMM.txt (MMM: minutes since start): the allocations
  that grew most since the baseline, grouped by traceback and by line, and the object types whose
  count grew most. Growth of the traced total while the node runs steadily points at Python
  objects; RSS and malloc in-use growing with the traced total flat points at native code.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import linecache
import re
import tempfile
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

NFRAMES = 12  # deep enough to see who called the allocator through the node's layers


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _malloc_mb() -> tuple[float | None, float | None]:
    """(in use, arenas + mmapped) in MB from glibc's mallinfo2 (all arenas), or None elsewhere."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None, None
    fn.restype = _MallInfo2
    info = fn()
    return (info.uordblks + info.hblkhd) / 2**20, (info.arena + info.hblkhd) / 2**20


def _give_back_heap() -> None:
    """Return what a snapshot or a report briefly took (tens of MB) to the kernel, so that RSS
    keeps following the node and not this thread's peaks."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _pymalloc_mb() -> tuple[float | None, float | None]:
    """(arenas, bytes in allocated blocks) in MB of Python's own small-object allocator, whose
    1 MiB arenas are mmapped (neither mallinfo2 nor malloc_trim sees them) and given back only
    when wholly empty. From CPython's _PyObject_DebugMallocStats, written to a scratch file."""
    try:
        libc = ctypes.CDLL(None)
        libc.fopen.restype, libc.fopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        stats = ctypes.pythonapi._PyObject_DebugMallocStats
        stats.argtypes, stats.restype = [ctypes.c_void_p], ctypes.c_int
    except AttributeError:
        return None, None
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as tmp:
        fp = libc.fopen(tmp.name.encode(), b"w")
        if not fp:
            return None, None
        stats(fp)
        libc.fclose(fp)
        text = tmp.read()
    arenas = re.search(r"# arenas allocated current\s*=\s*([\d,]+)", text)
    used = re.search(r"# bytes in allocated blocks\s*=\s*([\d,]+)", text)
    if not (arenas and used):
        return None, None
    return int(arenas.group(1).replace(",", "")) * 1.0, int(used.group(1).replace(",", "")) / 2**20


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def _type_counts() -> Counter:
    gc.collect()
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def _snapshot() -> tracemalloc.Snapshot:
    return tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, __file__),  # this thread's own work
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, linecache.__file__),
    ])


def _report(path: Path, minute: float, base: tracemalloc.Snapshot, base_types: Counter, top: int) -> None:
    snap = _snapshot()
    types = _type_counts()
    lines = [f"tracemalloc after {minute:.1f} min, compared with the snapshot after warm-up",
             f"traced now {tracemalloc.get_traced_memory()[0] / 2**20:.3f} MB; "
             f"total growth of snapshot {sum(s.size for s in snap.traces) / 2**20 - sum(s.size for s in base.traces) / 2**20:+.3f} MB", ""]
    lines.append(f"== top {top} growth by line ==")
    for stat in snap.compare_to(base, "lineno")[:top]:
        lines.append(f"{stat.size_diff / 1024:+10.1f} KiB {stat.count_diff:+7d} blocks  {stat.traceback[0]}")
    lines += ["", f"== top {top} growth by traceback =="]
    for stat in snap.compare_to(base, "traceback")[:top]:
        lines.append(f"{stat.size_diff / 1024:+10.1f} KiB {stat.count_diff:+7d} blocks (now {stat.size / 1024:.1f} KiB)")
        lines += ["    " + ln for ln in stat.traceback.format(most_recent_first=True)]
    lines += ["", "== live objects by type: largest count growth =="]
    diff = Counter({k: types[k] - base_types.get(k, 0) for k in types})
    for name, d in diff.most_common(top):
        lines.append(f"{d:+8d}  {name} (now {types[name]})")
    path.write_text("\n".join(lines) + "\n")
    linecache.clearcache()  # the source lines just formatted: not the node's memory


def _watch(out: Path, warmup_s: float, baseline_when: Path | None, every_s: float, sample_every: float, top: int,
           python: bool) -> None:
    t0 = time.monotonic()
    base = base_types = None
    next_report = 0.0
    with open(out / "trace.jsonl", "a") as log:
        while True:
            time.sleep(sample_every)
            t = time.monotonic() - t0
            in_use, arenas = _malloc_mb()
            py_arenas, py_used = _pymalloc_mb()
            log.write(json.dumps({"t_s": round(t, 1), "unix_s": round(time.time(), 2),
                                  "traced_mb": tracemalloc.get_traced_memory()[0] / 2**20 if python else None,
                                  "malloc_in_use_mb": in_use, "malloc_arenas_mb": arenas, "rss_mb": _rss_mb(),
                                  "pymalloc_arenas_mb": py_arenas, "pymalloc_used_mb": py_used,
                                  "tracemalloc_overhead_mb": tracemalloc.get_tracemalloc_memory() / 2**20 if python else None}) + "\n")
            log.flush()
            if not python:
                continue
            if base is None and (baseline_when.exists() if baseline_when else t >= warmup_s):
                base, base_types = _snapshot(), _type_counts()
                next_report = t + every_s
                _give_back_heap()
            elif base is not None and t >= next_report:
                _report(out / f"tracemalloc-{t / 60:05.1f}min.txt", t / 60, base, base_types, top)
                next_report += every_s
                _give_back_heap()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for trace.jsonl and tracemalloc-*.txt")
    ap.add_argument("--warmup-s", type=float, default=180.0, help="baseline snapshot this long after start (default 180)")
    ap.add_argument("--baseline-when", type=Path, default=None, help="take the baseline once this file exists (overrides --warmup-s)")
    ap.add_argument("--every-s", type=float, default=300.0, help="seconds between growth reports after it (default 300)")
    ap.add_argument("--sample-every", type=float, default=5.0, help="seconds between trace.jsonl lines (default 5)")
    ap.add_argument("--top", type=int, default=25, help="entries per report section (default 25)")
    ap.add_argument("--no-tracemalloc", action="store_true",
                    help="only the allocator's figures in trace.jsonl (mallinfo2, RSS): the node runs at full speed, untraced")
    ap.add_argument("node_args", nargs=argparse.REMAINDER, help="-- then the vla-ros arguments (node ...)")
    args = ap.parse_args()
    node_args = args.node_args[1:] if args.node_args[:1] == ["--"] else args.node_args
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if not args.no_tracemalloc:
        tracemalloc.start(NFRAMES)
    threading.Thread(target=_watch, args=(args.out, args.warmup_s, args.baseline_when, args.every_s, args.sample_every, args.top,
                                          not args.no_tracemalloc),
                     name="soak-tracemalloc", daemon=True).start()
    from vla_ros.cli import main as vla_main  # after tracemalloc starts: imports are traced too

    sys.argv = ["vla-ros", *node_args]
    return vla_main(node_args)


if __name__ == "__main__":
    sys.exit(main())
