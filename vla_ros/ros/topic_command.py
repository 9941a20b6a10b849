"""`vla-ros topic list|echo|hz`: look at ROS 2 topics over DDS without a ROS 2 install."""
from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from typing import Any

HELP = "list, echo or measure the rate of ROS 2 topics over DDS (no ROS 2 needed)"
DESCRIPTION = """\
Debugging tools for ROS 2 topics on machines without ROS 2, over the same Cyclone DDS transport as
`vla-ros play` and `vla-ros node --transport dds` (ROS_DOMAIN_ID is honoured).

  vla-ros topic list                           topics and types published on the domain
  vla-ros topic echo /ego/odom                 print messages (type discovered, or --type)
  vla-ros topic echo /vla/trajectory --count 1 --json
  vla-ros topic hz /cameras/front_wide/image_raw/compressed

The reader is best effort by default (matches reliable and best-effort publishers, like
`ros2 topic echo`); use --qos latched for transient-local topics such as /tf_static.
"""

DISCOVERY_S = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="topic_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="topics and types currently published on the domain")
    ls.add_argument("--wait", type=float, default=DISCOVERY_S, metavar="S", help=f"discovery time (default {DISCOVERY_S:g} s)")
    _common(ls, topic=False)
    echo = sub.add_parser("echo", help="print the messages of a topic")
    _common(echo)
    echo.add_argument("--count", type=int, default=None, metavar="N", help="exit after N messages")
    echo.add_argument("--json", action="store_true", help="one JSON object per line")
    echo.add_argument("--full", action="store_true", help="print long arrays in full (default: summarized)")
    hz = sub.add_parser("hz", help="measure the publishing rate of a topic")
    _common(hz)
    hz.add_argument("--window", type=int, default=100, metavar="N", help="periods averaged (default 100)")
    hz.add_argument("--duration", type=float, default=None, metavar="S", help="exit after S seconds")


def _common(p: argparse.ArgumentParser, topic: bool = True) -> None:
    if topic:
        p.add_argument("topic", help="ROS topic name, e.g. /ego/odom")
        p.add_argument("--type", dest="msgtype", metavar="pkg/msg/Name", help="message type (default: discovered from a publisher)")
        p.add_argument("--qos", choices=["sensor", "default", "latched"], default="sensor", help="reader QoS profile (default sensor)")
    p.add_argument("--domain-id", type=int, default=None, help="DDS domain (default: ROS_DOMAIN_ID, else 0)")


def run(args: argparse.Namespace) -> int:
    from vla_ros.command_error import CommandError

    try:
        from vla_ros.ros.dds_transport import DdsTransport, domain_id_from_env
    except ImportError as exc:
        raise CommandError(f"the DDS transport needs the 'cyclonedds' Python package ({exc})") from exc
    try:
        domain_id = domain_id_from_env() if args.domain_id is None else args.domain_id
    except ValueError as exc:
        raise CommandError(str(exc)) from exc

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with DdsTransport(domain_id=domain_id) as dds:
            if args.topic_command == "list":
                for topic, types in sorted(discover_topics(dds, args.wait, stop).items()):
                    print(f"{topic} [{', '.join(sorted(types))}]")
                return 0
            msgtype = args.msgtype or _discover_type(dds, args.topic, stop, CommandError)
            if args.topic_command == "echo":
                return _echo(dds, args, msgtype, stop)
            return _hz(dds, args, msgtype, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def discover_topics(dds: Any, wait_s: float, stop: threading.Event | None = None) -> dict[str, set[str]]:
    """ROS topic -> message types of the DDS publications seen on the transport's domain."""
    from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication
    from cyclonedds.domain import DomainParticipant

    from vla_ros.ros.dds_types import msgtype_from_dds_type_name, ros_topic_name

    spy = DomainParticipant(dds.domain_id)
    reader = BuiltinDataReader(spy, BuiltinTopicDcpsPublication)
    found: dict[str, set[str]] = {}
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            for sample in reader.take(N=256):
                name = getattr(sample, "topic_name", None)
                if not name or not name.startswith("rt/"):
                    continue  # not a ROS topic (services use rq/ rr/, DDS internals use others)
                try:
                    msgtype = msgtype_from_dds_type_name(sample.type_name)
                except ValueError:
                    msgtype = sample.type_name
                found.setdefault(ros_topic_name(name), set()).add(msgtype)
            time.sleep(0.05)
    finally:
        reader.__del__()
        spy.__del__()
    return found


def _discover_type(dds: Any, topic: str, stop: threading.Event, error: type[Exception]) -> str:
    print(f"waiting for a publisher of {topic} to learn its type (or pass --type) ...", file=sys.stderr)
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline and not stop.is_set():
        types = discover_topics(dds, 0.5, stop).get(topic)
        if types:
            if len(types) > 1:
                raise error(f"{topic} is published with several types ({', '.join(sorted(types))}); pass --type")
            return next(iter(types))
    raise error(f"no publisher of {topic} found; pass --type pkg/msg/Name to wait for one")


def to_plain(msg: Any, full: bool = False, limit: int = 64) -> Any:
    """A rosbags message as JSON-ready dicts and lists (ROS field names; long arrays summarized
    unless `full`)."""
    import numpy as np

    if isinstance(msg, np.ndarray):
        if not full and msg.size > limit:
            return f"<{msg.size} values of {msg.dtype}>"
        return msg.tolist()
    if isinstance(msg, (list, tuple)):
        if not full and len(msg) > limit:
            return [to_plain(v, full, limit) for v in msg[:limit]] + [f"... {len(msg) - limit} more"]
        return [to_plain(v, full, limit) for v in msg]
    msgtype = getattr(msg, "__msgtype__", None)
    if msgtype is None:
        return msg.item() if hasattr(msg, "item") else msg
    from vla_ros.ros.messages import TYPESTORE

    names = [name for name, _ in TYPESTORE.fielddefs[msgtype][1]] if msgtype in TYPESTORE.fielddefs else list(vars(msg))
    return {name: to_plain(getattr(msg, name), full, limit) for name in names if name != "__msgtype__"}


def _yaml_lines(value: Any, indent: int = 0) -> list[str]:
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.extend(_yaml_lines(v, indent + 1))
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
        return lines
    if isinstance(value, list):
        lines = []
        for v in value:
            if isinstance(v, dict):
                sub = _yaml_lines(v, indent + 1)
                lines.append(f"{pad}- {sub[0].strip()}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {_scalar(v)}")
        return lines
    return [f"{pad}{_scalar(value)}"]


def _scalar(v: Any) -> str:
    if isinstance(v, str):  # quoted only where YAML would misread it
        return json.dumps(v) if (not v or v.strip() != v or any(c in v for c in ":#\n\"'")) else v
    if isinstance(v, list):
        return "[]"
    if isinstance(v, dict):
        return "{}"
    return str(v)


def _echo(dds: Any, args: argparse.Namespace, msgtype: str, stop: threading.Event) -> int:
    import queue

    from vla_ros.command_error import CommandError

    if args.count is not None and args.count <= 0:
        raise CommandError("--count must be positive")
    inbox: queue.Queue[Any] = queue.Queue()
    try:
        dds.subscribe(args.topic, msgtype, inbox.put, qos=args.qos, depth=100)
    except (KeyError, ValueError, TypeError) as exc:
        raise CommandError(str(exc)) from exc
    printed = 0
    while not stop.is_set() and (args.count is None or printed < args.count):
        try:
            msg = inbox.get(timeout=0.1)
        except queue.Empty:
            continue
        plain = to_plain(msg, full=args.full)
        if args.json:
            print(json.dumps(plain), flush=True)
        else:
            print("\n".join(_yaml_lines(plain)) + "\n---", flush=True)
        printed += 1
    return 0


def _hz(dds: Any, args: argparse.Namespace, msgtype: str, stop: threading.Event) -> int:
    from collections import deque

    from vla_ros.command_error import CommandError

    if args.window < 2:
        raise CommandError("--window must be at least 2")
    arrivals: deque[float] = deque(maxlen=args.window + 1)
    lock = threading.Lock()

    def on_msg(_: Any) -> None:
        with lock:
            arrivals.append(time.monotonic())

    try:
        dds.subscribe(args.topic, msgtype, on_msg, qos=args.qos, depth=100, decode="raw")  # timing only: skip decoding
    except (KeyError, ValueError, TypeError) as exc:
        raise CommandError(str(exc)) from exc
    end = None if args.duration is None else time.monotonic() + args.duration
    while not stop.is_set() and (end is None or time.monotonic() < end):
        stop.wait(1.0 if end is None else max(0.0, min(1.0, end - time.monotonic())))
        with lock:
            stamps = list(arrivals)
        if len(stamps) < 2:
            print(f"no messages on {args.topic} yet" if not stamps else "waiting for a second message", flush=True)
            continue
        periods = [b - a for a, b in zip(stamps, stamps[1:])]
        mean = sum(periods) / len(periods)
        std = math.sqrt(sum((p - mean) ** 2 for p in periods) / len(periods))
        print(
            f"average rate: {1.0 / mean:.3f}\n\tmin: {min(periods):.3f}s max: {max(periods):.3f}s std dev: {std:.5f}s window: {len(stamps)}",
            flush=True,
        )
    return 0
