"""Reading and writing rosbag2 recordings (MCAP or sqlite3) with `rosbags`.

Reading yields deserialized messages in receive-time order; writing takes message objects built
with `vla_ros.ros.messages` (the ROS 2 Humble type store, shared with the transports).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rosbags.highlevel import AnyReader
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from vla_ros.config import resolve_topic
from vla_ros.ros.messages import TF_STATIC_TOPIC, TYPESTORE

BagFormat = Literal["mcap", "sqlite3"]


class BagError(ValueError):
    """A bag cannot be opened or lacks what the caller needs."""


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int  # when the recorder received it
    msg: Any


@dataclass(frozen=True)
class BagInfo:
    path: Path
    start_ns: int
    end_ns: int
    message_counts: dict[str, int]
    topic_types: dict[str, str]

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


def _open(path: str | Path) -> AnyReader:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"bag '{p}' does not exist")
    try:
        reader = AnyReader([p], default_typestore=TYPESTORE)
        reader.open()
    except Exception as exc:  # rosbags raises several reader-specific errors
        raise BagError(f"cannot open bag '{p}': {exc}") from exc
    return reader


def bag_info(path: str | Path) -> BagInfo:
    reader = _open(path)
    try:
        counts: dict[str, int] = {}
        types: dict[str, str] = {}
        for conn in reader.connections:
            counts[conn.topic] = counts.get(conn.topic, 0) + conn.msgcount
            types[conn.topic] = conn.msgtype
        return BagInfo(Path(path), reader.start_time, reader.end_time, counts, types)
    finally:
        reader.close()


def read_messages(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """Messages on `topics` (all if None) in receive-time order. A message that fails to
    deserialize is yielded with `msg=None` so the caller can count it."""
    reader = _open(path)
    try:
        wanted = None if topics is None else set(topics)
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        for conn, log_time, raw in reader.messages(connections=conns):
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception:  # noqa: BLE001 - a corrupt record is reported, not fatal
                msg = None
            yield BagMessage(conn.topic, conn.msgtype, log_time, msg)
    finally:
        reader.close()


# rosbag2 metadata version 8 is Jazzy's own, and the newest whose `offered_qos_profiles` is a
# YAML string, which Humble's reader requires (it reads the fields it knows, up to version 5's).
BAG_VERSION = 8
_UNSET = QosTime(0, 0)  # deadline/lifespan/lease "unspecified": the middleware's default (infinite)


def offered_qos(topic: str, latched: bool = False) -> Qos:
    """The QoS a bag records as offered for `topic`, which `ros2 bag play` then offers: reliable
    (heard by reliable and best-effort subscribers alike), keep last 10; /tf_static and `latched`
    topics (an arm's instruction) transient local, keep last 1, as tf2's static broadcaster
    offers it, so late subscribers get the last message."""
    latched = latched or topic == TF_STATIC_TOPIC
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=1 if latched else 10,
        reliability=QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
        deadline=_UNSET,
        lifespan=_UNSET,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=_UNSET,
        avoid_ros_namespace_conventions=False,
    )


class BagWriter:
    """A rosbag2 writer that registers each topic on first use.

    with BagWriter(path, "mcap") as bag:
        bag.write("/ego/odom", odometry_msg, stamp_ns)
    """

    def __init__(self, path: str | Path, fmt: BagFormat = "mcap", overwrite: bool = False,
                 latched: Iterable[str] = ()) -> None:
        """`latched`: topics recorded as offered transient local (besides /tf_static)."""
        self.path = Path(path)
        self._latched = {resolve_topic(t) for t in latched}
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(f"output bag '{self.path}' exists (use --force to overwrite)")
            _remove_tree(self.path)
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(fmt)
        if plugin is None:
            raise BagError(f"unknown bag format '{fmt}' (mcap or sqlite3)")
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=plugin)
        self._connections: dict[str, Any] = {}

    def __enter__(self) -> "BagWriter":
        self._writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()

    def write(self, topic: str, msg: Any, log_time_ns: int) -> None:
        self.write_raw(topic, msg.__msgtype__, TYPESTORE.serialize_cdr(msg, msg.__msgtype__), log_time_ns)

    def write_raw(self, topic: str, msgtype: str, data: bytes, log_time_ns: int) -> None:
        """Write already-serialized CDR bytes (paths built from arrays; deliberately corrupt test records)."""
        topic = resolve_topic(topic)  # bags hold fully qualified names (a Config() built in code has relative ones)
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE, offered_qos_profiles=[offered_qos(topic, topic in self._latched)])
            self._connections[topic] = conn
        self._writer.write(conn, log_time_ns, data)


def _remove_tree(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
