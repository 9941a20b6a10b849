#!/usr/bin/env python3
"""Soak: the drive node over DDS for a long time (default 60 min) on a looping bag with faults.

`vla-ros node --transport dds --use-sim-time` (random:tiny by default) runs in its own process
with its policy in a child process, fed by `vla-ros play --loop --clock` of a pattern bag
(4 cameras of JPEG at 10 Hz, 50 Hz odometry). Every --fault-every seconds this process
publishes one fault on a camera or the odometry topic, in turn: corrupt and non-image JPEG
payloads, a format/content mismatch, an unsupported format, an empty image, 8000x8000 PNG and
JPEG size bombs (69 bytes and ~600 bytes), stamps an hour ahead and 5 s behind, a burst of 500
images on one camera, NaN and zero-quaternion odometry (test/hostile.py). The bag's loop makes
/clock and every stream jump back once per pass.

RSS is probed every 5 s. Every minute it reports, for the node and for its policy process: the
median RSS of that minute and open file descriptors; and the node's output rate, fallback
activations, time jumps and drops by reason (from /diagnostics). It fails (exit 1) if the RSS of
either process grows more than --max-growth (default 1%) after warm-up, the baseline being the
same process measured in the same run: the median of the probes in the first --window minutes
(default 5) after warm-up against the median of those in the last --window minutes (a median,
because the policy process's RSS swings by about 2% from one tick to the next). It also prints
the slope of a line fitted to all probes after warm-up (MB per hour).

Bisecting a growth: --faults picks which fault kinds are sent (none, all, or a comma-separated
list of kinds, e.g. burst,png_bomb or odometry/stale_stamp). --trace-python runs the node under
tracemalloc (bench/soak_trace_node.py, same process): each minute's report adds the memory traced
by Python, the C allocator's in-use bytes (glibc mallinfo2) and Python's small-object arenas
(pymalloc) next to RSS, the summary fits a slope to each, and every --trace-every minutes
OUT/tracemalloc-MMMmin.txt lists what grew since the snapshot taken after warm-up, by traceback
and by object type. Traced flat while RSS and malloc in-use grow: native allocations; both flat
while RSS grows: allocator fragmentation or mappings. RSS under tracing is not comparable with
an untraced run (tracemalloc costs memory, and each snapshot leaves RSS a few tens of MB
higher); --trace-native gives the allocators' figures with the node untraced. Every probe also
splits the node's RSS by kind of mapping (/proc/PID/smaps: C heap, other anonymous maps, files,
stacks), with a slope for each; with --trace-native the summary also names the single mappings
whose RSS grew most between the end of warm-up and the end (soak.json `node_mappings_grown`).
Comparing mappings is how the last two creeps were found (by hand, then built in here): Cyclone
DDS's discovery receive buffer and glibc's thread arenas (bench/results/soak-2026-12-04-bisect-e*
and -f*; vla_ros/ros/dds_transport.py, vla_ros/ros/heap.py).

Usage: nice -n 10 .venv/bin/python bench/soak.py [--minutes 60] [--out bench/results/soak-DATE]
CI never runs it (an hour). Output: OUT/soak.json (every sample), OUT/soak.log (these lines),
OUT/node.log, OUT/soak.png (RSS and output rate over time); with --trace-python or --trace-native
also OUT/trace.jsonl (every 5 s), with --trace-python OUT/tracemalloc-*.txt.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))

import hostile  # noqa: E402
from vla_ros.config import load_config  # noqa: E402
from vla_ros.replay.pattern_bag import PatternBagSpec, pattern_image, write_pattern_bag  # noqa: E402
from vla_ros.ros import messages  # noqa: E402
from vla_ros.ros.dds_discovery import keep_dds_on_loopback  # noqa: E402
from vla_ros.ros.dds_transport import DdsTransport  # noqa: E402

keep_dds_on_loopback()

# random:tiny on a shared CPU takes a few hundred ms per tick: the watchdog ages of the DDS
# node tests (the defaults, 0.5 s, are for a GPU).
NODE_CONFIG = "safety: {max_input_age_s: 1.0, max_output_age_s: 2.0}\n"
FAULTS = [("camera", k) for k in hostile.CAMERA_FAULTS] + [("odometry", k) for k in hostile.ODOMETRY_FAULTS]


def select_faults(spec: str) -> list[tuple[str, str]]:
    """--faults: "all", "none", or kinds separated by commas, each bare (every stream that has
    it) or as stream/kind."""
    if spec == "all":
        return list(FAULTS)
    if spec == "none":
        return []
    chosen = []
    for item in (x.strip() for x in spec.split(",") if x.strip()):
        match = [f for f in FAULTS if item in (f[1], f"{f[0]}/{f[1]}")]
        if not match:
            known = ", ".join(sorted({k for _, k in FAULTS} | {f"{s}/{k}" for s, k in FAULTS}))
            raise SystemExit(f"soak: unknown fault kind {item!r}; known: all, none, {known}")
        chosen += [f for f in match if f not in chosen]
    return chosen


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class Watch:
    """What this process hears from the node and the player: outputs, diagnostics, /clock,
    and the newest stamp per input topic (faults are stamped relative to it)."""

    def __init__(self, dds: DdsTransport, config) -> None:
        self.lock = threading.Lock()
        self.paths = 0
        self.diag: dict[str, str] = {}
        self.clock_ns = 0
        self.newest: dict[str, int] = {}
        dds.subscribe(config.outputs.trajectory_topic, "nav_msgs/msg/Path", self._path)
        dds.subscribe("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", self._diag)
        dds.subscribe("/clock", "rosgraph_msgs/msg/Clock", self._clock, qos="sensor")
        for cam in config.cameras:
            dds.subscribe(cam.topic, "sensor_msgs/msg/CompressedImage", lambda m, t=cam.topic: self._input(t, m), qos="sensor")
        dds.subscribe(config.ego.odometry_topic, "nav_msgs/msg/Odometry", lambda m: self._input(config.ego.odometry_topic, m))

    def _path(self, _msg) -> None:
        with self.lock:
            self.paths += 1

    def _diag(self, msg) -> None:
        values = {kv.key: kv.value for status in msg.status for kv in status.values}
        values.update({f"level/{s.name}": str(int(s.level)) for s in msg.status})
        with self.lock:
            self.diag = values

    def _clock(self, msg) -> None:
        with self.lock:
            self.clock_ns = msg.clock.sec * 1_000_000_000 + msg.clock.nanosec

    def _input(self, topic: str, msg) -> None:
        with self.lock:
            self.newest[topic] = _stamp(msg)


def _proc_stats(proc: psutil.Process | None) -> dict:
    if proc is None:
        return {"rss_mb": None, "fds": None}
    try:
        return {"rss_mb": proc.memory_info().rss / 2**20, "fds": proc.num_fds(), "cpu_s": sum(proc.cpu_times()[:2])}
    except psutil.Error:
        return {"rss_mb": None, "fds": None}


def smaps_rss_mb(pid: int) -> dict[str, float] | None:
    """The node's RSS by kind of mapping (/proc/PID/smaps): `heap` (the C allocator's main
    arena), `anon` (other anonymous maps: the allocator's thread arenas and large blocks, Python's
    object arenas, numpy buffers, Cyclone's pools), `file` (libraries and mapped files), `stack`.
    Which one grows says which allocator holds the growth."""
    out = {"heap": 0.0, "anon": 0.0, "file": 0.0, "stack": 0.0}
    kind = "anon"
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(None, 6)
                if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:  # a mapping's first line
                    name = head[5].strip() if len(head) > 5 else ""
                    kind = ("heap" if name == "[heap]" else "stack" if name.startswith("[stack") else
                            "anon" if not name or name.startswith("[anon") else "file" if name.startswith("/") else "stack" if "stack" in name else "file")
                elif head[0] == "Rss:":
                    out[kind] += int(head[1]) / 1024
    except OSError:
        return None
    return out


def mapping_rss_kb(source: int | Path) -> dict[str, dict] | None:
    """Every mapping of a process (/proc/PID/smaps for a pid, or a saved copy of that file) by its
    start address: size, name, RSS (KiB)."""
    maps: dict[str, dict] = {}
    current = None
    try:
        with open(f"/proc/{source}/smaps" if isinstance(source, int) else source) as f:
            for line in f:
                head = line.split(None, 6)
                if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                    start, end = (int(a, 16) for a in head[0].split("-"))
                    current = maps[head[0].split("-")[0]] = {"size_kb": (end - start) // 1024, "perms": head[1],
                                                              "name": head[5].strip() if len(head) > 5 else "", "rss_kb": 0}
                elif head[0] == "Rss:" and current is not None:
                    current["rss_kb"] = int(head[1])
    except OSError:
        return None
    return maps


def grown_mappings(first: dict[str, dict], last: dict[str, dict], top: int = 8) -> list[dict]:
    """The mappings whose RSS changed most between two `mapping_rss_kb` snapshots, largest growth
    first (a mapping that appeared or went counts from or to 0): where a growth lives, e.g. one
    anonymous block of a library's buffers rather than the allocator's arenas."""
    rows = []
    for start in set(first) | set(last):
        a, b = first.get(start), last.get(start)
        change = (b["rss_kb"] if b else 0) - (a["rss_kb"] if a else 0)
        if change:
            m = b or a
            rows.append({"start": start, "size_kb": m["size_kb"], "perms": m["perms"], "name": m["name"] or "[anonymous]",
                         "rss_first_kb": a["rss_kb"] if a else None, "rss_last_kb": b["rss_kb"] if b else None, "change_kb": change})
    return sorted(rows, key=lambda r: -r["change_kb"])[:top]


def _policy_child(node: psutil.Process) -> psutil.Process | None:
    try:
        kids = [c for c in node.children(recursive=True) if "python" in (c.name() or "")]
        return max(kids, key=lambda c: c.memory_info().rss) if kids else None
    except psutil.Error:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0, help="soak length after warm-up (default 60)")
    ap.add_argument("--warmup-minutes", type=float, default=5.0, help="warm-up before the memory baseline (default 5)")
    ap.add_argument("--fault-every", type=float, default=10.0, help="seconds between faults (default 10)")
    ap.add_argument("--report-every", type=float, default=60.0, help="seconds between reports (default 60)")
    ap.add_argument("--probe-every", type=float, default=5.0, help="seconds between RSS probes (default 5)")
    ap.add_argument("--window", type=float, default=5.0, help="minutes at each end compared for growth (default 5)")
    ap.add_argument("--max-growth", type=float, default=0.01, help="fail above this RSS growth after warm-up (default 0.01)")
    ap.add_argument("--bag-seconds", type=float, default=60.0, help="length of the looping pattern bag (default 60)")
    ap.add_argument("--model", default="random:tiny")
    ap.add_argument("--domain", type=int, default=None, help="DDS domain (default: 90 + pid %% 10)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / f"soak-{dt.date.today().isoformat()}")
    ap.add_argument("--faults", default="all",
                    help="fault kinds sent, in turn: all (default), none, or a comma list such as burst,png_bomb,odometry/stale_stamp")
    ap.add_argument("--trace-python", action="store_true",
                    help="run the node under tracemalloc (bench/soak_trace_node.py): traced and malloc MB per minute, "
                         "OUT/tracemalloc-*.txt growth reports")
    ap.add_argument("--overwrite", action="store_true", help="write into an --out that already holds a soak.json")
    ap.add_argument("--trace-native", action="store_true",
                    help="like --trace-python without tracemalloc: the C allocator's in-use MB (mallinfo2) per minute, "
                         "and the mappings that grew most; node untraced")
    ap.add_argument("--trace-every", type=float, default=5.0, help="minutes between tracemalloc reports (default 5)")
    args = ap.parse_args()
    faults = select_faults(args.faults)
    if (args.out / "soak.json").exists() and not args.overwrite:
        raise SystemExit(f"soak: {args.out} already holds a run's output (soak.json); choose another --out or pass --overwrite")

    args.out.mkdir(parents=True, exist_ok=True)
    args.commit = _commit()  # the code the node starts with (others may commit while it runs)
    domain = args.domain if args.domain is not None else 90 + os.getpid() % 10
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "PYTHONUNBUFFERED": "1"}
    config = load_config(None).resolve_topics()
    cfg_path = args.out / "node.yaml"
    cfg_path.write_text(NODE_CONFIG)
    bag = Path(tempfile.mkdtemp(prefix="vla_ros-soak-")) / "bag"  # not kept with the results
    spec = PatternBagSpec(duration_s=args.bag_seconds)
    write_pattern_bag(bag, config, spec)
    logf = open(args.out / "soak.log", "w")

    def say(line: str) -> None:
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    say(f"soak: {args.minutes:g} min after {args.warmup_minutes:g} min warm-up, model {args.model}, DDS domain {domain}, "
        f"fault every {args.fault_every:g} s ({args.faults}: {len(faults)} kinds){', node under tracemalloc' if args.trace_python else ', allocator figures' if args.trace_native else ''}, host {platform.node()} ({psutil.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})")
    node_cmd = ["node", "--transport", "dds", "--model", args.model, "--config", str(cfg_path), "--use-sim-time", "--status-every", "60"]
    trace_log = args.out / "trace.jsonl"
    baseline_flag = args.out / ".trace-baseline"  # created at the end of the warm-up: the wrapper's baseline snapshot
    if args.trace_python and args.trace_native:
        raise SystemExit("soak: --trace-python already includes --trace-native's figures; pass one")
    tracing = args.trace_python or args.trace_native
    if tracing:
        for old in [trace_log, baseline_flag, *args.out.glob("tracemalloc-*.txt")]:
            old.unlink(missing_ok=True)
        launcher = [sys.executable, str(ROOT / "bench" / "soak_trace_node.py"), "--out", str(args.out),
                    "--baseline-when", str(baseline_flag), "--every-s", str(args.trace_every * 60)]
        launcher += ["--no-tracemalloc", "--"] if args.trace_native else ["--"]
    else:
        launcher = [sys.executable, "-m", "vla_ros.cli"]
    node = subprocess.Popen(
        launcher + node_cmd,
        env=env, stdout=open(args.out / "node.log", "w"), stderr=subprocess.STDOUT, cwd=ROOT)
    player = None
    samples: list[dict] = []
    probes: list[dict] = []
    final_drops: dict[str, int] = {}
    mappings_warm = mappings_last = None  # --trace-native: the node's mappings after warm-up and at the end
    faults_sent: dict[str, int] = {}
    status = 1
    try:
        with DdsTransport(domain_id=domain) as dds:
            watch = Watch(dds, config)
            cam_pubs = {c.topic: dds.publisher(c.topic, "sensor_msgs/msg/CompressedImage", qos="sensor") for c in config.cameras}
            odom_pub = dds.publisher(config.ego.odometry_topic, "nav_msgs/msg/Odometry")
            jpeg = messages.encode_jpeg(pattern_image(0, 0, spec.height, spec.width))
            deadline = time.monotonic() + 300
            while "drive node running" not in (args.out / "node.log").read_text():
                if node.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("node did not start:\n" + (args.out / "node.log").read_text()[-3000:])
                time.sleep(0.5)
            player = subprocess.Popen(
                [sys.executable, "-m", "vla_ros.cli", "play", "--bag", str(bag), "--loop", "--clock", "--quiet", "--wait-subscribers", "60"],
                env=env, stdout=open(args.out / "play.log", "w"), stderr=subprocess.STDOUT, cwd=ROOT)
            node_ps = psutil.Process(node.pid)
            t_start = time.monotonic()
            args.unix_start = time.time()  # to place the wrapper's trace.jsonl lines on this run's minutes
            t_end = t_start + (args.warmup_minutes + args.minutes) * 60
            next_fault = t_start + args.fault_every
            next_report = t_start + args.report_every
            next_probe = t_start
            minute_probes: dict[str, list[float]] = {"node": [], "policy": []}
            last_paths = 0
            k = 0
            while time.monotonic() < t_end:
                if node.poll() is not None:
                    raise RuntimeError(f"node exited with {node.returncode}")
                if player.poll() is not None:
                    raise RuntimeError(f"player exited with {player.returncode}")
                now = time.monotonic()
                if args.trace_python and now - t_start >= args.warmup_minutes * 60 and not baseline_flag.exists():
                    baseline_flag.touch()
                if faults and now >= next_fault:
                    stream, kind = faults[k % len(faults)]
                    k += 1
                    with watch.lock:
                        clock_ns, newest = watch.clock_ns, dict(watch.newest)
                    if clock_ns:
                        if stream == "camera":
                            cam = config.cameras[k % len(config.cameras)]
                            stamp = max(clock_ns, newest.get(cam.topic, 0)) + 1_000_000  # just after the newest
                            for msg in hostile.camera_fault(kind, stamp, cam.name, jpeg):
                                cam_pubs[cam.topic].publish(msg)
                        else:
                            topic = config.ego.odometry_topic
                            odom_pub.publish(hostile.odometry_fault(kind, max(clock_ns, newest.get(topic, 0)) + 1_000_000))
                        faults_sent[f"{stream}/{kind}"] = faults_sent.get(f"{stream}/{kind}", 0) + 1
                    next_fault += args.fault_every
                if now >= next_probe:
                    if args.trace_native and now - t_start >= args.warmup_minutes * 60 and mappings_warm is None:
                        mappings_warm = mapping_rss_kb(node.pid)
                    for name, ps in (("node", node_ps), ("policy", _policy_child(node_ps))):
                        rss = _proc_stats(ps)["rss_mb"]
                        if rss is not None:
                            probes.append({"minute": round((now - t_start) / 60, 3), "process": name, "rss_mb": rss})
                            if name == "node":
                                probes[-1]["smaps_mb"] = smaps_rss_mb(ps.pid)
                            minute_probes[name].append(rss)
                    next_probe += args.probe_every
                if now >= next_report:
                    with watch.lock:
                        paths, diag = watch.paths, dict(watch.diag)
                    stats = {"node": _proc_stats(node_ps), "policy": _proc_stats(_policy_child(node_ps))}
                    for name, values in minute_probes.items():
                        if values:
                            stats[name].update(rss_mb=float(np.median(values)), rss_max_mb=max(values))
                            values.clear()
                    traced = _last_trace(trace_log) if tracing else None
                    if traced:
                        stats["node"].update({k: traced.get(k) for k in ("traced_mb", "malloc_in_use_mb", "malloc_arenas_mb", "pymalloc_arenas_mb")})
                    sample = {
                        "minute": round((now - t_start) / 60, 2),
                        "warmup": now - t_start < args.warmup_minutes * 60,
                        "node": stats["node"],
                        "policy": stats["policy"],
                        "outputs_per_s": (paths - last_paths) / args.report_every,
                        "outputs": paths,
                        "fallback_activations": int(diag.get("fallback_activations", "0")),
                        "time_jumps": int(diag.get("time_jumps", "0")),
                        "ticks_run": int(diag.get("ticks_run", "0")),
                        "drops": {k2.split("/", 1)[1]: int(v) for k2, v in diag.items() if k2.startswith("dropped/")},
                        "load": os.getloadavg()[0],
                    }
                    last_paths = paths
                    samples.append(sample)
                    n, p = sample["node"], sample["policy"]
                    say(f"[{sample['minute']:6.1f} min]{' warm-up' if sample['warmup'] else ''} node RSS {n['rss_mb']:.1f} MB fds {n['fds']}"
                        f" | policy RSS {p['rss_mb'] or 0:.1f} MB fds {p['fds']} | outputs {sample['outputs_per_s']:.1f}/s"
                        f" | ticks {sample['ticks_run']} | fallbacks {sample['fallback_activations']} | time jumps {sample['time_jumps']}"
                        f" | faults sent {sum(faults_sent.values())} | load {sample['load']:.2f}"
                        + (f" | traced {n['traced_mb']:.2f} MB" if n.get("traced_mb") is not None else "")
                        + (f" | malloc in use {n['malloc_in_use_mb']:.2f} MB" if n.get("malloc_in_use_mb") is not None else "")
                        + (f" | pymalloc arenas {n['pymalloc_arenas_mb']:.0f} MB" if n.get("pymalloc_arenas_mb") is not None else ""))
                    next_report += args.report_every
                time.sleep(0.05)
            if mappings_warm is not None:
                mappings_last = mapping_rss_kb(node.pid)
            time.sleep(3.0)  # the node's diagnostics (1 Hz) catch up with the last fault
            with watch.lock:
                final_drops = {k2.split("/", 1)[1]: int(v) for k2, v in watch.diag.items() if k2.startswith("dropped/")}
            status = 0
    except RuntimeError as exc:
        say(f"soak: FAILED: {exc}")
    finally:
        for proc in (player, node):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
    shutil.rmtree(bag.parent, ignore_errors=True)
    baseline_flag.unlink(missing_ok=True)
    trace = _read_trace(trace_log) if tracing else []
    result = summarize(samples, probes, faults_sent, final_drops, args, status, node.returncode, trace)
    if mappings_warm is not None and mappings_last is not None:
        result["node_mappings_grown"] = grown_mappings(mappings_warm, mappings_last)
    (args.out / "soak.json").write_text(json.dumps(result, indent=1))
    plot(samples, args.out / "soak.png")
    for name in ("node", "policy"):
        g = result["growth"].get(name)
        if g:
            say(f"{name} RSS after warm-up (median of {args.window:g} min at each end): {g['baseline_mb']:.1f} MB -> {g['final_mb']:.1f} MB,"
                f" ratio {g['ratio']:.4f} (limit {1 + args.max_growth:.2f}); fitted slope {g['slope_mb_per_h']:+.2f} MB/h;"
                f" max {g['max_mb']:.1f} MB; fds {g['fds_first']} -> {g['fds_last']}")
    say("node RSS by mapping after warm-up (median of first -> last window; fitted slope): " + "; ".join(
        f"{kind} {g['baseline_mb']:.2f} -> {g['final_mb']:.2f} MB ({g['slope_mb_per_h']:+.2f} MB/h)" for kind, g in result["node_smaps_growth"].items()))
    for m in result.get("node_mappings_grown", [])[:5]:
        say(f"node mapping {m['start']} ({m['name']}, {m['perms']}, {m['size_kb']} KiB): RSS {m['rss_first_kb']} -> "
            f"{m['rss_last_kb']} KiB after warm-up ({m['change_kb']:+d} KiB)")
    for name, g in result.get("trace_growth", {}).items():
        say(f"node {name} after warm-up (median of {args.window:g} min at each end): {g['baseline_mb']:.3f} MB -> {g['final_mb']:.3f} MB,"
            f" {g['final_mb'] - g['baseline_mb']:+.3f} MB; fitted slope {g['slope_mb_per_h']:+.3f} MB/h")
    say(f"outputs {result['outputs']} ({result['outputs_per_s_mean']:.2f}/s mean after warm-up), fallback activations "
        f"{result['fallback_activations']}, time jumps {result['time_jumps']}, node exit {node.returncode}")
    say(f"faults sent: {json.dumps(faults_sent, sort_keys=True)}")
    say(f"node drops: {json.dumps(result['drops'], sort_keys=True)}")
    say(f"soak: {'PASSED' if result['passed'] else 'FAILED'}")
    logf.close()
    return 0 if result["passed"] else 1


def _fit(points: list[tuple[float, float]], window: float) -> dict | None:
    """Median of the first and of the last `window` minutes, and a fitted slope (per hour)."""
    if len(points) < 4:
        return None
    t = np.array([m for m, _ in points])
    v = np.array([r for _, r in points])
    base, final = float(np.median(v[t <= t[0] + window])), float(np.median(v[t >= t[-1] - window]))
    slope = float(np.polyfit(t, v, 1)[0]) * 60.0 if np.ptp(t) > 0 else 0.0
    return {"baseline_mb": base, "final_mb": final, "ratio": final / base if base else None, "max_mb": float(v.max()),
            "min_mb": float(v.min()), "slope_mb_per_h": slope, "probes": len(points)}


def _read_trace(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            pass
    return rows


def _last_trace(path: Path) -> dict | None:
    rows = _read_trace(path)
    return rows[-1] if rows else None


def summarize(samples: list[dict], probes: list[dict], faults_sent: dict, final_drops: dict, args, status: int, node_rc,
              trace: list[dict] | None = None) -> dict:
    after = [s for s in samples if not s["warmup"]]
    growth = {}
    for name in ("node", "policy"):
        fit = _fit([(p["minute"], p["rss_mb"]) for p in probes if p["process"] == name and p["minute"] >= args.warmup_minutes],
                   args.window)
        fds = [s[name]["fds"] for s in after if s[name]["fds"] is not None]
        if fit:
            growth[name] = {**fit, "fds_first": fds[0] if fds else None, "fds_last": fds[-1] if fds else None}
    smaps_growth = {}
    for kind in ("heap", "anon", "file", "stack"):
        fit = _fit([(p["minute"], p["smaps_mb"][kind]) for p in probes
                    if p["process"] == "node" and p.get("smaps_mb") and p["minute"] >= args.warmup_minutes], args.window)
        if fit:
            smaps_growth[kind] = fit
    trace_growth = {}
    for row in trace or []:  # on this run's minutes (the wrapper starts with the node, before the player)
        row["minute"] = round((row["unix_s"] - getattr(args, "unix_start", row["unix_s"])) / 60, 3)
    for key in ("traced_mb", "malloc_in_use_mb", "malloc_arenas_mb", "pymalloc_arenas_mb", "pymalloc_used_mb", "rss_mb"):
        fit = _fit([(r["minute"], r[key]) for r in trace or [] if r.get(key) is not None and r["minute"] >= args.warmup_minutes],
                   args.window)
        if fit:
            trace_growth[key] = fit
    last = samples[-1] if samples else {}
    passed = status == 0 and node_rc == 0 and bool(growth) and all(g["ratio"] <= 1 + args.max_growth for g in growth.values())
    return {
        "passed": passed,
        "minutes": args.minutes,
        "warmup_minutes": args.warmup_minutes,
        "model": args.model,
        "fault_every_s": args.fault_every,
        "faults": args.faults,
        "trace_python": args.trace_python,
        "trace_native": args.trace_native,
        "trace_growth": trace_growth,
        "node_smaps_growth": smaps_growth,
        "max_growth": args.max_growth,
        "growth": growth,
        "outputs": last.get("outputs", 0),
        "outputs_per_s_mean": float(np.mean([s["outputs_per_s"] for s in after])) if after else 0.0,
        "fallback_activations": last.get("fallback_activations", 0),
        "time_jumps": last.get("time_jumps", 0),
        "drops": final_drops or last.get("drops", {}),
        "faults_sent": faults_sent,
        "node_exit_code": node_rc,
        "commit": args.commit,
        "host": {"cpus": psutil.cpu_count(), "python": platform.python_version(), "shared": "other jobs ran on this machine (load column)"},
        "samples": samples,
        "probes": probes,
        "trace": trace or [],
    }


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "vla_ros/sensors", "vla_ros/ros/node_core.py"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + (" (sensing code modified)" if dirty else "")
    except OSError:
        return "unknown"


def plot(samples: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    if not samples:
        return
    t = [s["minute"] for s in samples]
    traced = any(s["node"].get("malloc_in_use_mb") is not None for s in samples)
    fig, axes = plt.subplots(3 if traced else 2, 1, figsize=(9, 9 if traced else 6), sharex=True)
    ax1, ax2 = axes[0], axes[-1]
    for name in ("node", "policy"):
        ax1.plot(t, [s[name]["rss_mb"] or np.nan for s in samples], label=f"{name} RSS")
    ax1.set_ylabel("MB")
    ax1.legend()
    ax1.set_title("drive node soak: RSS per process")
    if traced:  # relative to the first sample: the two scales differ by tens of MB
        for key, label in (("rss_mb", "node RSS"), ("malloc_in_use_mb", "node malloc in use"), ("malloc_arenas_mb", "node malloc arenas"),
                           ("pymalloc_arenas_mb", "node pymalloc arenas"), ("traced_mb", "node traced by Python")):
            vals = np.array([s["node"].get(key) if s["node"].get(key) is not None else np.nan for s in samples], dtype=float)
            ok = vals[~np.isnan(vals)]
            if ok.size:
                axes[1].plot(t, vals - ok[0], label=label)
        axes[1].set_ylabel("MB since first report")
        axes[1].legend()
    ax2.plot(t, [s["outputs_per_s"] for s in samples], label="trajectories/s")
    ax2.set_ylabel("outputs/s")
    ax2.set_xlabel("minutes")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
