"""`vla-ros play`: publish a rosbag2 recording over DDS in real time, like `ros2 bag play`."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

HELP = "publish a bag's messages in real time over DDS (like ros2 bag play, no ROS 2 needed)"
DESCRIPTION = """\
Publish the messages of a rosbag2 recording (MCAP or sqlite3) on their topics, in receive-time
order, keeping the recorded spacing (scaled by --rate). The transport is Cyclone DDS speaking the
ROS 2 wire protocol: ROS 2 nodes using rmw_cyclonedds on the same ROS_DOMAIN_ID receive the
messages, as do `vla-ros node --transport dds` and `vla-ros topic echo`.

Records are published as recorded (their CDR bytes go straight to DDS). QoS: reliable,
volatile, keep last 10; transient local (latched) where the bag's metadata says the topic was
offered so (an arm's instruction, as `ros2 bag play` does), and for /tf_static in bags that do
not say. With --clock, /clock carries the bag time
(rosgraph_msgs/Clock, best effort) so nodes with use_sim_time follow the bag.

examples:
  vla-ros play --bag drive.mcap
  vla-ros play --bag drive.mcap --rate 0.5 --loop --clock
  ROS_DOMAIN_ID=7 vla-ros play --bag drive.mcap --topics /cam/front/compressed /ego/odom
"""

LATCHED_TOPICS = ("/tf_static",)


def _latched(conn: Any) -> bool:
    """Whether a bag connection was offered transient local (rosbag2 metadata), or is /tf_static."""
    profiles = getattr(getattr(conn, "ext", None), "offered_qos_profiles", None) or []
    recorded = [getattr(getattr(q, "durability", None), "name", "") for q in profiles if not isinstance(q, str)]
    if recorded:
        return "TRANSIENT_LOCAL" in recorded
    return conn.topic in LATCHED_TOPICS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bag", required=True, type=Path, help="rosbag2 directory or .mcap/.db3 file")
    parser.add_argument("--transport", choices=["dds"], default="dds", help="how to publish (dds: Cyclone DDS, ROS 2 wire protocol)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    parser.add_argument("--loop", action="store_true", help="start over at the end (header stamps then jump back)")
    parser.add_argument(
        "--clock",
        nargs="?",
        type=float,
        const=100.0,
        default=None,
        metavar="HZ",
        help="publish the bag time on /clock at HZ (default 100) for nodes with use_sim_time",
    )
    parser.add_argument("--topics", nargs="+", metavar="TOPIC", help="publish only these topics")
    parser.add_argument(
        "--start-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="wait S seconds after creating the publishers, so subscribers can discover them",
    )
    parser.add_argument(
        "--wait-subscribers",
        type=float,
        default=0.0,
        metavar="S",
        help="before playing, wait up to S seconds until every published topic has a subscriber",
    )
    parser.add_argument("--domain-id", type=int, default=None, help="DDS domain (default: ROS_DOMAIN_ID, else 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")


class _Timeline:
    """Maps bag time to wall time for one pass: bag t plays at wall start + (t - t0) / rate."""

    def __init__(self, bag_start_ns: int, rate: float) -> None:
        self.bag_start_ns = bag_start_ns
        self.rate = rate
        self.wall_start = time.monotonic()

    def restart(self) -> None:
        self.wall_start = time.monotonic()

    def wall_time(self, bag_ns: int) -> float:
        return self.wall_start + (bag_ns - self.bag_start_ns) / 1e9 / self.rate

    def bag_now_ns(self) -> int:
        return self.bag_start_ns + int(max(time.monotonic() - self.wall_start, 0.0) * self.rate * 1e9)


class _Progress:
    def __init__(self, enabled: bool, duration_s: float) -> None:
        self.enabled = enabled
        self.duration_s = duration_s
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def update(self, bag_s: float, count: int, loop: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self.tty else 5.0):
            return
        self._last = now
        line = f"[play] {bag_s:7.2f} / {self.duration_s:.2f} s  {count} messages" + (f"  loop {loop}" if loop else "")
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from vla_ros.command_error import CommandError

    if not args.rate > 0:
        raise CommandError(f"--rate must be positive, got {args.rate}")
    if args.clock is not None and not args.clock > 0:
        raise CommandError(f"--clock rate must be positive, got {args.clock}")
    if args.start_delay < 0 or args.wait_subscribers < 0:
        raise CommandError("--start-delay and --wait-subscribers must not be negative")
    try:
        from vla_ros.ros.dds_clock import ClockPublisher
        from vla_ros.ros.dds_transport import DdsError, DdsTransport, domain_id_from_env
    except ImportError as exc:
        raise CommandError(f"the DDS transport needs the 'cyclonedds' Python package ({exc})") from exc
    from rosbags.highlevel import AnyReader

    from vla_ros.ros.messages import TYPESTORE

    if not args.bag.exists():
        raise CommandError(f"bag '{args.bag}' does not exist")
    try:
        domain_id = domain_id_from_env() if args.domain_id is None else args.domain_id
    except ValueError as exc:
        raise CommandError(str(exc)) from exc

    try:
        reader = AnyReader([args.bag], default_typestore=TYPESTORE)
        reader.open()
    except Exception as exc:  # rosbags raises several reader-specific errors
        raise CommandError(f"cannot open bag '{args.bag}': {exc}") from exc

    stop = threading.Event()
    # Ctrl-C and SIGTERM end playback between messages, so everything is closed in order.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    transport = None
    clock = None
    counts: dict[str, int] = {}
    failed: dict[str, int] = {}
    try:
        conns = _select_connections(reader, args.topics, args.clock is not None, CommandError)
        transport = DdsTransport(domain_id=domain_id)
        publishers: dict[int, Any] = {}
        for conn in conns:
            qos = "latched" if _latched(conn) else "default"
            try:
                publishers[conn.id] = transport.publisher(conn.topic, conn.msgtype, qos=qos, typestore=reader.typestore)
            except Exception as exc:  # noqa: BLE001 - e.g. a type with wstring fields
                print(f"vla-ros play: warning: not publishing {conn.topic} ({conn.msgtype}): {exc}", file=sys.stderr)
        if not publishers:
            raise CommandError("no topic of the bag can be published")

        timeline = _Timeline(reader.start_time, args.rate)
        topics = sorted({c.topic for c in conns if c.id in publishers})
        print(
            f"vla-ros play: {args.bag} ({reader.duration / 1e9:.2f} s, {len(topics)} topics) on DDS domain {domain_id}"
            f" at rate {args.rate:g}" + (", looping" if args.loop else "") + (f", /clock at {args.clock:g} Hz" if args.clock else ""),
            file=sys.stderr,
        )
        if args.clock is not None:
            started = threading.Event()
            clock = ClockPublisher(transport, lambda: timeline.bag_now_ns() if started.is_set() else reader.start_time, args.clock).start()
        if args.wait_subscribers > 0:
            _wait_for_subscribers(list(publishers.values()), args.wait_subscribers, stop)
        if args.start_delay > 0:
            stop.wait(args.start_delay)

        progress = _Progress(not args.quiet, reader.duration / 1e9)
        loop = 0
        timeline.restart()
        if clock is not None:
            started.set()
        while not stop.is_set():
            for conn, log_ns, raw in reader.messages(connections=[c for c in conns if c.id in publishers]):
                delay = timeline.wall_time(log_ns) - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
                pub = publishers[conn.id]
                try:
                    pub.publish_raw(raw)
                    counts[conn.topic] = counts.get(conn.topic, 0) + 1
                except DdsError as exc:
                    failed[conn.topic] = failed.get(conn.topic, 0) + 1
                    if failed[conn.topic] == 1:
                        print(f"vla-ros play: warning: {exc} (further failures on this topic are only counted)", file=sys.stderr)
                progress.update((log_ns - reader.start_time) / 1e9, sum(counts.values()), loop)
            if stop.is_set() or not args.loop:
                break
            loop += 1
            timeline.restart()
        progress.update(min(timeline.bag_now_ns() - reader.start_time, reader.duration) / 1e9, sum(counts.values()), loop, force=True)
        progress.done()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if clock is not None:
            clock.stop()
        if transport is not None:
            transport.close()
        reader.close()

    for topic in sorted(set(counts) | set(failed)):
        extra = f" ({failed[topic]} failed)" if failed.get(topic) else ""
        print(f"  {topic}: {counts.get(topic, 0)} published{extra}", file=sys.stderr)
    if stop.is_set():
        print("vla-ros play: stopped", file=sys.stderr)
    return 0


def _wait_for_subscribers(publishers: list[Any], timeout_s: float, stop: threading.Event) -> None:
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        lonely = sorted({p.topic for p in publishers if p.matched_count() == 0})
        if not lonely:
            return
        if time.monotonic() > deadline:
            print(f"vla-ros play: warning: no subscriber after {timeout_s:g} s on {', '.join(lonely)}; playing anyway", file=sys.stderr)
            return
        stop.wait(0.02)


def _select_connections(reader: Any, wanted: list[str] | None, own_clock: bool, error: type[Exception]) -> list[Any]:
    conns = list(reader.connections)
    available = sorted({c.topic for c in conns})
    if wanted:
        missing = [t for t in wanted if t not in available]
        if missing:
            raise error(f"topics not in the bag: {', '.join(missing)} (the bag has: {', '.join(available)})")
        conns = [c for c in conns if c.topic in wanted]
    if own_clock and any(c.topic == "/clock" for c in conns):
        print("vla-ros play: warning: the bag's own /clock is not replayed because --clock publishes it", file=sys.stderr)
        conns = [c for c in conns if c.topic != "/clock"]
    if not conns:
        raise error("nothing to play: the bag has no messages on the selected topics")
    return conns
