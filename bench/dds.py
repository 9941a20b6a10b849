#!/usr/bin/env python3
"""DDS transport benchmark: encode + decode time per message of the transport's fast path against
cyclonedds-python's own codec (the naive path), measured in the same run.

- fast: what DdsPublisher.publish / DdsSubscription do: rosbags CDR encode (uint8 data stays a
  numpy buffer) + padding, and rosbags CDR decode of the received bytes.
- naive: what DataWriter.write / DataReader.take do with the generated IDL class: cyclonedds'
  XCDR1 serializer on an IDL object whose uint8 data is a list of ints, and its deserializer. The
  cost of building that list is not counted (favours the baseline).

Messages: sensor_msgs/CompressedImage with a 200 KB and a 650 KB JPEG payload, a raw 1080p rgb8
sensor_msgs/Image (6.2 MB), nav_msgs/Odometry. With --loopback, also the round trip through a
second process over DDS on loopback (this process publishes, the other decodes, re-encodes and
publishes back; both use the fast path): half of it is one publish -> decoded-message hop.

Usage: .venv/bin/python bench/dds.py [--repeats 20] [--loopback] [--json]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vla_ros.replay.bag_io import TYPESTORE  # noqa: E402
from vla_ros.ros import messages  # noqa: E402
from vla_ros.ros.dds_transport import DdsTransport, pad_cdr  # noqa: E402
from vla_ros.ros.dds_types import idl_class, to_idl  # noqa: E402
from vla_ros.ros.dds_discovery import keep_dds_on_loopback  # noqa: E402

keep_dds_on_loopback()  # this process and its peer process discover on this host only, over lo


def jpeg_like(size: int, seed: int) -> bytes:
    """Incompressible bytes with JPEG markers: the codec cost depends only on the size."""
    body = np.random.default_rng(seed).integers(0, 256, size - 4, dtype=np.uint8).tobytes()
    return b"\xff\xd8" + body + b"\xff\xd9"


def workload() -> list[tuple[str, str, Any]]:
    raw = np.random.default_rng(2).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    return [
        ("CompressedImage 200 KB", "sensor_msgs/msg/CompressedImage", messages.compressed_image(1, "cam", jpeg_like(200_000, 0))),
        ("CompressedImage 650 KB", "sensor_msgs/msg/CompressedImage", messages.compressed_image(1, "cam", jpeg_like(650_000, 1))),
        ("Image 1080p rgb8 6.2 MB", "sensor_msgs/msg/Image", messages.raw_image(1, "cam", raw, "rgb8")),
        ("Odometry", "nav_msgs/msg/Odometry", messages.odometry(1, (1.0, 2.0, 0.0), (0, 0, 0, 1), (10.0, 0, 0))),
    ]


def best_ms(fn: Callable[[], Any], repeats: int) -> float:
    """Median of `repeats` timed calls (ms)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def codec_rows(repeats: int) -> list[dict[str, Any]]:
    rows = []
    for name, msgtype, msg in workload():
        fast_bytes = pad_cdr(TYPESTORE.serialize_cdr(msg, msgtype))
        idl_obj = to_idl(msg)
        cls = idl_class(msgtype)
        assert pad_cdr(idl_obj.serialize(use_version_2=False)) == fast_bytes  # same wire bytes
        big = len(fast_bytes) > 1_000_000
        naive_repeats = max(3, repeats // 5) if big else repeats
        fast_enc = best_ms(lambda: pad_cdr(TYPESTORE.serialize_cdr(msg, msgtype)), repeats)
        fast_dec = best_ms(lambda: TYPESTORE.deserialize_cdr(fast_bytes, msgtype), repeats)
        naive_enc = best_ms(lambda: idl_obj.serialize(use_version_2=False), naive_repeats)
        naive_dec = best_ms(lambda: cls.deserialize(fast_bytes), naive_repeats)
        rows.append(
            {
                "message": name,
                "bytes": len(fast_bytes),
                "fast_ms": fast_enc + fast_dec,
                "naive_ms": naive_enc + naive_dec,
                "fast_encode_ms": fast_enc,
                "fast_decode_ms": fast_dec,
                "naive_encode_ms": naive_enc,
                "naive_decode_ms": naive_dec,
                "speedup": (naive_enc + naive_dec) / max(fast_enc + fast_dec, 1e-9),
            }
        )
    return rows


def echo(domain: int) -> None:
    """Child process of --loopback: decode every /bench/ping/<i> message and publish it back."""
    with DdsTransport(domain_id=domain) as dds:
        for i, (_, msgtype, _) in enumerate(workload()):
            back = dds.publisher(f"/bench/pong/t{i}", msgtype)
            dds.subscribe(f"/bench/ping/t{i}", msgtype, back.publish)
        print("ready", flush=True)
        sys.stdin.read()  # until the parent closes our stdin


def loopback_rows(repeats: int) -> list[dict[str, Any]]:
    """Round trip (ms) through a second process over DDS; each hop = encode, send, decode."""
    domain = random.SystemRandom().randrange(20, 102)
    child = subprocess.Popen([sys.executable, __file__, "--echo", str(domain)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    rows = []
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with DdsTransport(domain_id=domain) as dds:
            for i, (name, msgtype, msg) in enumerate(workload()):
                arrived = threading.Event()
                received_at: list[float] = []

                def on_msg(_: Any) -> None:
                    received_at.append(time.perf_counter())
                    arrived.set()

                pub = dds.publisher(f"/bench/ping/t{i}", msgtype)
                sub = dds.subscribe(f"/bench/pong/t{i}", msgtype, on_msg)
                if not (pub.wait_for_subscribers(timeout_s=30) and sub.wait_for_publishers(timeout_s=30)):
                    raise RuntimeError("DDS participants did not discover each other")
                time.sleep(0.2)  # let both directions finish matching
                rtt = []
                for _ in range(repeats):
                    arrived.clear()
                    t = time.perf_counter()
                    pub.publish(msg)
                    if not arrived.wait(10):
                        raise RuntimeError(f"{name}: message lost")
                    rtt.append((received_at[-1] - t) * 1e3)
                rows.append({"message": name, "round_trip_ms_p50": statistics.median(rtt), "round_trip_ms_max": max(rtt)})
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(timeout=30)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--loopback", action="store_true", help="also measure publish -> callback latency over DDS")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--echo", type=int, metavar="DOMAIN", help=argparse.SUPPRESS)  # --loopback's child
    args = parser.parse_args()
    if args.echo is not None:
        echo(args.echo)
        return 0

    codec = codec_rows(args.repeats)
    loop = loopback_rows(args.repeats) if args.loopback else []
    if args.json:
        print(json.dumps({"codec": codec, "loopback": loop}, indent=2))
        return 0
    print("encode + decode per message (median ms); naive = cyclonedds-python codec on the generated IDL class")
    print(f"{'message':<26}{'bytes':>10}{'fast':>10}{'naive':>11}{'naive/fast':>12}")
    for r in codec:
        print(f"{r['message']:<26}{r['bytes']:>10}{r['fast_ms']:>10.3f}{r['naive_ms']:>11.2f}{r['speedup']:>11.0f}x")
    if loop:
        print("\nround trip to a second process and back over DDS on loopback (ms; 2 hops of encode+send+decode)")
        print(f"{'message':<26}{'p50':>10}{'max':>10}")
        for r in loop:
            print(f"{r['message']:<26}{r['round_trip_ms_p50']:>10.2f}{r['round_trip_ms_max']:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
