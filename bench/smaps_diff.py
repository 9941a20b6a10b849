"""Which mappings of a process grew between two saved copies of its /proc/PID/smaps.

    .venv/bin/python bench/smaps_diff.py FIRST_SMAPS LAST_SMAPS [--top N]

Prints the total RSS of each copy, then the mappings whose RSS changed most (start address,
permissions, size, name, RSS first -> last), largest growth first: the comparison
`bench/soak.py --trace-native` makes of the node at the end of warm-up and at the end, for
copies taken by hand (e.g. `cp /proc/PID/smaps node-smaps-06min.txt`). The soak bisect's copies
are in bench/results/soak-2026-12-04-bisect-{e,f}-*/.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from soak import grown_mappings, mapping_rss_kb  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first", type=Path)
    ap.add_argument("last", type=Path)
    ap.add_argument("--top", type=int, default=8, help="how many mappings to list (default 8)")
    args = ap.parse_args()
    first, last = mapping_rss_kb(args.first), mapping_rss_kb(args.last)
    if first is None or last is None:
        raise SystemExit(f"smaps_diff: cannot read {args.first if first is None else args.last}")
    total = [sum(m["rss_kb"] for m in maps.values()) for maps in (first, last)]
    print(f"total RSS {total[0]} -> {total[1]} KiB ({total[1] - total[0]:+d})")
    for m in grown_mappings(first, last, args.top):
        print(f"{m['change_kb']:+7d} KiB  {m['rss_first_kb']} -> {m['rss_last_kb']} KiB  {m['start']} {m['perms']} "
              f"{m['size_kb']} KiB {m['name']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
