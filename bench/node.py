#!/usr/bin/env python3
"""Drive-node benchmark over DDS on loopback, measured from an external subscriber.

A `vla-ros node --transport dds` process runs the policy (default random:tiny) on a live
4-camera 10 Hz stream (576x320 JPEG) with 50 Hz odometry, all stamped with the system clock.
This process subscribes to /vla/trajectory and /vla/latency and reports
- output period jitter: |period - 100 ms| p50/p99 between consecutive /vla/trajectory messages
  (target p99 < 5 ms), against the same statistic of the input camera stream, which a sender
  process of its own publishes (so this process only receives and timestamps);
  split into the node's control tick times (the first pose of each re-timed path is stamped with
  its tick) and the delivery time from tick to arrival here;
- input-to-output latency: camera stamp t0 -> first arrival of a trajectory stamped t0, p50/p95
  (target p95 < inference p95 + 30 ms), against the node's own inference time (policy_total_ms
  on /vla/latency) measured in the same run.

Usage: .venv/bin/python bench/node.py [--seconds 30] [--model random:tiny] [--json]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vla_ros.config import load_config  # noqa: E402
from vla_ros.replay.pattern_bag import pattern_image  # noqa: E402
from vla_ros.ros import messages  # noqa: E402
from vla_ros.ros.conversions import LATENCY_FIELDS  # noqa: E402
from vla_ros.ros.dds_transport import DdsTransport  # noqa: E402
from vla_ros.sensors.geometry import yaw_to_quat  # noqa: E402
from vla_ros.ros.dds_discovery import keep_dds_on_loopback  # noqa: E402

keep_dds_on_loopback()  # this process and the node it starts discover on this host only, over lo


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def stream_inputs(domain: int, conn, stop) -> None:
    """The 10 Hz cameras and 50 Hz odometry, stamped with the system clock, from a process of
    their own (like `vla-ros play`): in the measuring process, serializing four JPEGs every
    100 ms would hold its interpreter lock and delay the arrival times it records."""
    config = load_config(None)
    jpegs = [[messages.encode_jpeg(pattern_image(v, k, 320, 576, texture_seed=k)) for k in range(10)] for v in range(4)]
    with DdsTransport(domain_id=domain) as dds:
        cams = [dds.publisher(c.topic, "sensor_msgs/msg/CompressedImage", qos="sensor") for c in config.cameras]
        odom = dds.publisher(config.ego.odometry_topic, "nav_msgs/msg/Odometry")
        t_start = time.time_ns()
        next_t = time.monotonic()
        k = 0
        while not stop.is_set():
            now = time.time_ns()
            odom.publish(messages.odometry(now, [8.0 * (now - t_start) / 1e9, 0, 0], yaw_to_quat(0.0), linear=(8.0, 0, 0)))
            if k % 5 == 0:
                for v, (pub, cam) in enumerate(zip(cams, config.cameras)):
                    pub.publish(messages.compressed_image(now, cam.name, jpegs[v][(k // 5) % 10]))
                conn.send(now)
            k += 1
            next_t += 0.02
            time.sleep(max(0.0, next_t - time.monotonic()))
    conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="measurement window after warm-up (default 30)")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds after the first output before measuring (default 5)")
    ap.add_argument("--model", default="random:tiny")
    ap.add_argument("--config", default=None, help="node config YAML (default: built-in defaults)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    domain = 20 + os.getpid() % 80  # ids above 101 put Cyclone's ports in Linux's ephemeral range
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain)}
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "vla_ros.cli", "node", "--transport", "dds", "--model", args.model]
    if args.config:
        cmd += ["--config", args.config]
    node = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    arrivals: list[tuple[int, int]] = []  # (arrival wall ns, header stamp)
    tick_times: dict[int, int] = {}  # arrival wall ns -> the node's control tick time (first pose's stamp)
    inference_ms: list[float] = []
    cam_sent: list[int] = []
    camera_stamps: set[int] = set()
    lock = threading.Lock()
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    try:
        with DdsTransport(domain_id=domain) as dds:
            def on_path(data: bytes) -> None:
                now = time.time_ns()  # the bytes are here: decoding is this process's time, not the node's
                m = messages.TYPESTORE.deserialize_cdr(data, "nav_msgs/msg/Path")
                arrivals.append((now, _stamp(m)))
                if m.poses:  # re-timed to the tick: the first point is the pose at the tick's time
                    tick_times[now] = _stamp(m.poses[0])

            dds.subscribe("/vla/trajectory", "nav_msgs/msg/Path", on_path, decode="raw")
            total_i = LATENCY_FIELDS.index("policy_total_ms")
            breakdown: list[tuple[float, ...]] = []  # (t0 s, start delay, stack, policy call, t0 -> result ready) ms
            idx = [LATENCY_FIELDS.index(k) for k in ("t0_s", "start_delay_ms", "stack_ms", "policy_call_ms", "input_to_output_ms")]

            stages: list[list[float]] = []

            def on_latency(m) -> None:
                inference_ms.append(float(m.data[total_i]))
                breakdown.append(tuple(float(m.data[i]) for i in idx))
                stages.append([float(x) for x in m.data])

            dds.subscribe("/vla/latency", "std_msgs/msg/Float64MultiArray", on_latency)
            stamps_conn, child_conn = ctx.Pipe(duplex=False)
            sender = ctx.Process(target=stream_inputs, args=(domain, child_conn, stop), name="bench-inputs", daemon=True)
            sender.start()
            child_conn.close()

            def collect() -> None:  # the sender reports each camera stamp as it publishes it
                while True:
                    try:
                        t = stamps_conn.recv()
                    except (EOFError, OSError):
                        return
                    with lock:
                        camera_stamps.add(t)
                        cam_sent.append(t)

            collector = threading.Thread(target=collect, daemon=True)
            collector.start()
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and not any(s in camera_stamps for _, s in list(arrivals)):
                if node.poll() is not None:
                    raise SystemExit("node exited:\n" + Path(log.name).read_text()[-3000:])
                time.sleep(0.1)
            if time.monotonic() >= deadline:
                raise SystemExit("no policy output within 180 s:\n" + Path(log.name).read_text()[-3000:])
            print(f"node is publishing; warming up {args.warmup:.0f} s, measuring {args.seconds:.0f} s ...", file=sys.stderr)
            time.sleep(args.warmup)
            t0_measure = time.time_ns()
            n_inf0 = len(inference_ms)
            time.sleep(args.seconds)
            t1_measure = time.time_ns()
            stop.set()
            sender.join(10)
            collector.join(2)  # every stamp the sender reported is in before the statistics
    finally:
        node.terminate()
        node.wait(30)

    window = [(a, s) for a, s in arrivals if t0_measure <= a <= t1_measure]
    periods = np.diff([a for a, _ in window]) / 1e6
    jitter = np.abs(periods - 100.0)
    # Split the arrival jitter: when the node's control timer ran (stamped in the message), and
    # how long the message then took to reach this subscriber (the node's encoding and write, DDS, this process's wake-up).
    ticks = np.array([tick_times[a] for a, _ in window if a in tick_times], dtype=np.int64)
    tick_jitter = np.abs(np.diff(ticks) / 1e6 - 100.0)
    delivery = np.array([(a - tick_times[a]) / 1e6 for a, _ in window if a in tick_times])
    cam = np.array([t for t in cam_sent if t0_measure <= t <= t1_measure])
    cam_jitter = np.abs(np.diff(cam) / 1e6 - 100.0)
    first_arrival: dict[int, int] = {}
    for a, s in window:
        if s in camera_stamps and s not in first_arrival:
            first_arrival[s] = a
    latency = np.array([(a - s) / 1e6 for s, a in first_arrival.items()])
    inf = np.array(inference_ms[n_inf0:])
    # Where the latency goes: t0 -> inference start (frames in transit, trigger), stack assembly,
    # the policy call (with the hand-over to the policy process), then result ready -> trajectory
    # received (waiting for the control tick, transport).
    parts: dict[str, list[float]] = {"start_delay": [], "stack": [], "policy": [], "publish_wait": []}
    by_us = {round(s / 1e3): (s, a) for s, a in first_arrival.items()}  # t0_s is a float: match to the microsecond
    for t0_s, start_ms, stack_ms, call_ms, ready_ms in breakdown[n_inf0:]:
        if round(t0_s * 1e6) not in by_us:
            continue
        s_ns, arrival = by_us[round(t0_s * 1e6)]
        parts["start_delay"].append(start_ms)
        parts["stack"].append(stack_ms)
        parts["policy"].append(call_ms)
        parts["publish_wait"].append((arrival - s_ns) / 1e6 - ready_ms)
    result = {
        "model": args.model,
        "outputs": int(len(window)),
        "policy_outputs": int(len(latency)),
        "jitter_ms_p50": float(np.percentile(jitter, 50)),
        "jitter_ms_p99": float(np.percentile(jitter, 99)),
        "input_stream_jitter_ms_p99": float(np.percentile(cam_jitter, 99)),
        "node_tick_jitter_ms_p99": float(np.percentile(tick_jitter, 99)),
        "delivery_ms_p50": float(np.percentile(delivery, 50)),
        "delivery_ms_p99": float(np.percentile(delivery, 99)),
        "latency_ms_p50": float(np.percentile(latency, 50)),
        "latency_ms_p95": float(np.percentile(latency, 95)),
        "inference_ms_p50": float(np.percentile(inf, 50)),
        "inference_ms_p95": float(np.percentile(inf, 95)),
    }
    result["latency_over_inference_p95_ms"] = result["latency_ms_p95"] - result["inference_ms_p95"]
    result["breakdown_ms"] = {k: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))} for k, v in parts.items() if v}
    st = np.array(stages[n_inf0:])
    result["policy_stages_ms_p50"] = {k: float(np.nanpercentile(st[:, i], 50)) for i, k in enumerate(LATENCY_FIELDS)
                                      if k.endswith("_ms") and len(st) and not np.isnan(st[:, i]).all()}
    result["meets_jitter_target"] = result["jitter_ms_p99"] < 5.0
    result["meets_latency_target"] = result["latency_over_inference_p95_ms"] < 30.0
    if args.json:
        print(json.dumps(result))
    else:
        print(f"drive node over DDS, {args.model}, {args.seconds:.0f} s: {result['outputs']} trajectories, {result['policy_outputs']} new policy outputs")
        print(f"  output period jitter |T-100ms|: p50 {result['jitter_ms_p50']:.2f} ms, p99 {result['jitter_ms_p99']:.2f} ms (target < 5; input stream p99 {result['input_stream_jitter_ms_p99']:.2f})")
        print(f"    of which: node control ticks (stamped in the messages) p99 {result['node_tick_jitter_ms_p99']:.2f} ms; "
              f"tick -> arrival here p50 {result['delivery_ms_p50']:.2f} ms, p99 {result['delivery_ms_p99']:.2f} ms")
        print(f"  t0 -> publish latency: p50 {result['latency_ms_p50']:.0f} ms, p95 {result['latency_ms_p95']:.0f} ms")
        print(f"  inference (policy) time: p50 {result['inference_ms_p50']:.0f} ms, p95 {result['inference_ms_p95']:.0f} ms")
        print(f"  latency p95 - inference p95 = {result['latency_over_inference_p95_ms']:.1f} ms (target < 30)")
        print("  node stages p50 ms: " + ", ".join(f"{k[:-3]} {v:.1f}" for k, v in result["policy_stages_ms_p50"].items()))
        print("  breakdown p50/p95 ms: " + ", ".join(f"{k} {v['p50']:.1f}/{v['p95']:.1f}" for k, v in result["breakdown_ms"].items()))
    return 0 if result["meets_jitter_target"] and result["meets_latency_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
