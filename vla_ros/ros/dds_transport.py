"""A ROS-less transport: publish and subscribe to ROS 2 topics over Cyclone DDS, wire-compatible
with ROS 2 nodes that use rmw_cyclonedds.

    with DdsTransport() as dds:                       # domain from ROS_DOMAIN_ID, default 0
        pub = dds.publisher("/vla/trajectory", "nav_msgs/msg/Path")
        pub.publish(path_msg)                         # rosbags message or anything with ROS fields
        dds.subscribe("/cam/front/compressed", "sensor_msgs/msg/CompressedImage", on_image, qos="sensor")

What makes it ROS 2 on the wire: DDS topic `rt/<topic>`, type `pkg::msg::dds_::Name_` with the
.msg layout (`dds_types`), XCDR1 (plain CDR, the encapsulation rmw_cyclonedds reads and writes)
and the ROS QoS profiles below.

Fast path: messages are encoded and decoded with rosbags' CDR codec, whose uint8 sequences are
numpy arrays, and the bytes are handed to Cyclone directly. cyclonedds-python's own codec builds
a Python list of ints for `sequence<uint8>` (0.3 s for a 6 MB image); it is only used for IDL
objects that a caller passes in and for `decode="idl"`. Received messages are delivered as
rosbags type-store objects, the same classes bag replay yields (`msg.data` is a numpy uint8
array), on one dispatch thread per transport.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cyclonedds._clayer import ddspy_take, ddspy_write  # raw CDR in/out, bypassing the Python codec
from cyclonedds.core import GuardCondition, InstanceState, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.idl import IdlStruct
from cyclonedds.pub import DataWriter
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from vla_ros.ros.dds_discovery import cyclone_fragment, discovery_from_env
from vla_ros.ros.messages import TYPESTORE
from vla_ros.ros.dds_types import dds_topic_name, dds_type_name, idl_class, normalize_msgtype, to_rosbags

log = logging.getLogger(__name__)

QosName = Literal["default", "sensor", "latched", "clock"]
Decode = Literal["ros", "idl", "raw"]

# ROS 2 profiles (rmw_qos_profile_*): default = reliable, volatile, keep last 10; sensor data =
# best effort, keep last 5; latched = transient local (as /tf_static and map servers use);
# clock = best effort, keep last 1 (rclcpp::ClockQoS, what `ros2 bag play --clock` offers).
_PROFILES: dict[str, tuple[bool, bool, int]] = {  # name -> (reliable, transient_local, depth)
    "default": (True, False, 10),
    "sensor": (False, False, 5),
    "latched": (True, True, 1),
    "clock": (False, False, 1),
}

# CDR encapsulation identifiers (first two bytes, big-endian) of plain XCDR1.
_CDR_BE, _CDR_LE = b"\x00\x00", b"\x00\x01"

_ANY_STATE = SampleState.Any | ViewState.Any | InstanceState.Any
_TAKE_BATCH = 64


class DdsError(RuntimeError):
    """A DDS entity cannot be created or a write failed."""


def domain_id_from_env() -> int:
    """ROS_DOMAIN_ID as ROS 2 reads it: unset or empty means 0."""
    raw = os.environ.get("ROS_DOMAIN_ID", "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"ROS_DOMAIN_ID='{raw}' is not an integer") from None
    if not 0 <= value <= 232:  # the largest id whose RTPS ports still fit (ROS 2 docs)
        raise ValueError(f"ROS_DOMAIN_ID={value} is outside 0..232")
    return value


# Large samples (raw images): a bigger socket receive buffer (up to what the kernel allows), UDP
# datagrams near 64 KB and a writer that may hold 8 MB unacknowledged cut the time of a 6 MB
# image between processes on loopback about 6x (bench/dds.py). Each receive thread stores what
# it receives one after the other in a buffer and starts a new one when it is full (the old one
# is freed once delivered); the thread that hears only discovery takes one to two hours to fill
# Cyclone's 1 MiB default, a creep of about 0.7 MB/h that a memory watch reads as growth
# (bench/results/soak-2026-12-04-bisect-e-mappings). 256 KiB (two of the 128 KiB messages a
# buffer must hold) bounds it to a quarter, with the same loopback round trips (docs/dds.md).
# Wire behaviour is unchanged.
_TUNING = (
    "<General><MaxMessageSize>65500B</MaxMessageSize></General>"
    "<Sizing><ReceiveBufferSize>256KiB</ReceiveBufferSize></Sizing>"
    '<Internal><SocketReceiveBufferSize min="default" max="10MB"/><Watermarks><WhcHigh>8MB</WhcHigh></Watermarks></Internal>'
)

_domains: dict[int, Domain] = {}
_domains_lock = threading.Lock()


def cyclone_config(env: Mapping[str, str] | None = None) -> str:
    """The Cyclone configuration of this process's domain: our tuning, then the discovery
    settings rmw_cyclonedds derives from the same environment, then CYCLONEDDS_URI (last, so a
    user's configuration overrides ours), as comma-separated documents."""
    env = os.environ if env is None else env
    docs = [_TUNING, cyclone_fragment(discovery_from_env(env))]
    parts = [f'<CycloneDDS><Domain id="any">{body}</Domain></CycloneDDS>' for body in docs if body]
    uri = env.get("CYCLONEDDS_URI", "").strip()
    return ",".join(parts + ([uri] if uri else []))


def _ensure_domain(domain_id: int) -> None:
    """Create this process's Cyclone domain with our configuration before the first
    participant. The domain lives as long as the process (deleting it would delete every
    participant on it)."""
    with _domains_lock:
        if domain_id in _domains:
            return
        config = cyclone_config()
        try:
            _domains[domain_id] = Domain(domain_id, config)
        except Exception as exc:  # noqa: BLE001 - say which configuration Cyclone refused
            raise DdsError(
                f"Cyclone DDS refused the domain configuration ({exc}); CYCLONEDDS_URI={os.environ.get('CYCLONEDDS_URI', '')!r}, "
                f"discovery {discovery_from_env()}"
            ) from exc


def type_hash_user_data(msgtype: str, typestore: Any) -> bytes:
    """USER_DATA that rmw_cyclonedds (Iron and later) puts on every endpoint: the type's
    RIHS01 hash, which ROS tools use to check that both sides agree on the type. Empty when
    the type store cannot hash the type (e.g. a bag's own definition of an unknown type)."""
    try:
        return f"typehash={typestore.hash_rihs01(msgtype)};".encode()
    except Exception:  # noqa: BLE001 - the hash is advisory; matching works without it
        return b""


def ros_qos(name: QosName | str = "default", depth: int | None = None, user_data: bytes = b"") -> Qos:
    """Cyclone QoS for a ROS 2 profile name, XCDR1 data representation included."""
    try:
        reliable, latched, default_depth = _PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown QoS profile '{name}' (one of {', '.join(_PROFILES)})") from None
    return Qos(
        Policy.Reliability.Reliable(duration(milliseconds=100)) if reliable else Policy.Reliability.BestEffort,
        Policy.Durability.TransientLocal if latched else Policy.Durability.Volatile,
        Policy.History.KeepLast(depth or default_depth),
        # rmw_cyclonedds endpoints use XCDR1 only; a writer offering XCDR2 would not match them.
        Policy.DataRepresentation(use_cdrv0_representation=True),
        *([Policy.Userdata(data=user_data)] if user_data else []),
    )


def pad_cdr(data: bytes | bytearray | memoryview) -> bytes:
    """CDR bytes padded to a multiple of 4, the pad count in the encapsulation options as
    Cyclone writes it."""
    pad = -len(data) % 4
    if not pad:
        return bytes(data)
    out = bytearray(data)
    out += b"\0" * pad
    out[3] = (out[3] & ~3) | pad
    return bytes(out)


class DdsPublisher:
    """A DataWriter on `rt/<topic>`. `publish` accepts a rosbags message, an IDL object from
    `dds_types.idl_class`, any object with the ROS field names, or serialized CDR bytes."""

    def __init__(self, topic: str, msgtype: str, writer: DataWriter, typestore: Any) -> None:
        self.topic = topic
        self.msgtype = msgtype
        self.dds_topic = dds_topic_name(topic)
        self.dds_type = dds_type_name(msgtype)
        self.published = 0
        self._typestore = typestore
        self._writer = writer

    def serialize(self, msg: Any) -> bytes:
        """The CDR bytes (with encapsulation header, padded) that `publish(msg)` writes."""
        if isinstance(msg, (bytes, bytearray, memoryview)):
            return pad_cdr(msg)
        ts = self._typestore
        if isinstance(msg, IdlStruct):  # cyclonedds' codec is correct, only slow for big uint8 data
            return pad_cdr(msg.serialize(use_version_2=False))
        msgtype = getattr(msg, "__msgtype__", None)
        if msgtype is not None and msgtype != self.msgtype:
            raise TypeError(f"{self.topic} carries {self.msgtype}, not {msgtype}")
        return pad_cdr(ts.serialize_cdr(to_rosbags(msg, self.msgtype, ts), self.msgtype))

    def publish(self, msg: Any) -> None:
        self.publish_raw(self.serialize(msg))

    def publish_raw(self, cdr: bytes | bytearray | memoryview) -> None:
        """Write serialized XCDR1 bytes (4-byte encapsulation header first), e.g. a record read
        from a rosbag2 file. Cyclone checks the bytes against the type; bad data raises DdsError."""
        data = cdr if isinstance(cdr, bytes) and len(cdr) % 4 == 0 else pad_cdr(cdr)
        if data[:2] not in (_CDR_LE, _CDR_BE):
            raise DdsError(f"{self.topic}: not plain CDR (encapsulation {data[:2].hex()}); rmw_cyclonedds expects XCDR1")
        ret = ddspy_write(self._writer._ref, data)
        if ret < 0:
            raise DdsError(f"{self.topic}: write failed (DDS return code {ret}; malformed {self.msgtype}?)")
        self.published += 1

    def matched_count(self) -> int:
        """Number of matched readers (ROS subscriptions) right now."""
        return self._writer.get_publication_matched_status().current_count

    def wait_for_subscribers(self, count: int = 1, timeout_s: float = 5.0) -> bool:
        return _wait_for_matches(self.matched_count, count, timeout_s)


def _wait_for_matches(matched: Callable[[], int], count: int, timeout_s: float) -> bool:
    """Poll a matched-endpoint count until it reaches `count`; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while matched() < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@dataclass
class _SubStats:
    received: int = 0
    dropped: int = 0  # samples that failed to decode
    callback_errors: int = 0


class DdsSubscription:
    """A DataReader on `rt/<topic>` whose samples the transport's dispatch thread decodes and
    passes to `callback`."""

    def __init__(self, topic: str, msgtype: str, reader: DataReader, callback: Callable[[Any], None], decode: Decode, typestore: Any) -> None:
        self.topic = topic
        self.msgtype = msgtype
        self.dds_topic = dds_topic_name(topic)
        self.dds_type = dds_type_name(msgtype)
        self.stats = _SubStats()
        self.callback = callback
        self.decode = decode
        self._reader = reader
        self._typestore = typestore
        self.condition = ReadCondition(reader, _ANY_STATE)

    @property
    def received(self) -> int:
        return self.stats.received

    @property
    def dropped(self) -> int:
        return self.stats.dropped

    def matched_count(self) -> int:
        """Number of matched writers (ROS publishers) right now."""
        return self._reader.get_subscription_matched_status().current_count

    def wait_for_publishers(self, count: int = 1, timeout_s: float = 5.0) -> bool:
        return _wait_for_matches(self.matched_count, count, timeout_s)

    def decode_sample(self, data: bytes) -> Any:
        if self.decode == "raw":
            return data
        if self.decode == "idl" or data[:2] not in (_CDR_LE, _CDR_BE):
            obj = idl_class(self.msgtype, self._typestore).deserialize(data)
            return obj if self.decode == "idl" else to_rosbags(obj, self.msgtype, self._typestore)
        return self._typestore.deserialize_cdr(data, self.msgtype)

    def _drain(self) -> None:
        """Take everything queued and deliver it (dispatch thread only)."""
        while True:
            samples = ddspy_take(self._reader._ref, _ANY_STATE, _TAKE_BATCH)
            if isinstance(samples, int) or not samples:  # an int is a DDS error code
                return
            for data, info in samples:
                if not info.valid_data:  # dispose/unregister notifications carry no message
                    continue
                try:
                    msg = self.decode_sample(data)
                except Exception as exc:  # noqa: BLE001 - a malformed sample is counted, not fatal
                    self.stats.dropped += 1
                    log.warning("%s: dropped a sample that does not decode as %s: %s", self.topic, self.msgtype, exc)
                    continue
                self.stats.received += 1
                try:
                    self.callback(msg)
                except Exception:  # noqa: BLE001 - one failing callback must not stop the others
                    self.stats.callback_errors += 1
                    log.exception("%s: subscription callback failed", self.topic)
            if len(samples) < _TAKE_BATCH:
                return


class DdsTransport:
    """One DDS participant on ROS_DOMAIN_ID (or `domain_id`), its writers and readers, and a
    thread that delivers received messages to subscription callbacks in arrival order."""

    def __init__(self, domain_id: int | None = None, typestore: Any = TYPESTORE) -> None:
        self.domain_id = domain_id_from_env() if domain_id is None else int(domain_id)
        if self.domain_id > 101:
            # ROS 2 docs: on Linux, ids above 101 put discovery ports in the ephemeral range.
            log.warning("DDS domain %d > 101: its ports may collide with ephemeral ports on Linux", self.domain_id)
        self.typestore = typestore
        _ensure_domain(self.domain_id)
        self._participant = DomainParticipant(self.domain_id)
        self._topics: dict[str, tuple[Topic, str]] = {}
        self._publishers: list[DdsPublisher] = []
        self._subs: list[DdsSubscription] = []
        self._lock = threading.Lock()
        self._waitset = WaitSet(self._participant)
        self._wake = GuardCondition(self._participant)
        self._waitset.attach(self._wake)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def __enter__(self) -> "DdsTransport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _topic(self, topic: str, msgtype: str, typestore: Any = None) -> Topic:
        if self._closed:
            raise DdsError("transport is closed")
        msgtype = normalize_msgtype(msgtype)
        name = dds_topic_name(topic)
        with self._lock:
            known = self._topics.get(name)
            if known is not None:
                if known[1] != msgtype:
                    raise TypeError(f"topic {topic} is already used with type {known[1]}, not {msgtype}")
                return known[0]
            t = Topic(self._participant, name, idl_class(msgtype, typestore or self.typestore))
            self._topics[name] = (t, msgtype)
            return t

    def publisher(
        self, topic: str, msgtype: str, qos: QosName | str = "default", depth: int | None = None, typestore: Any = None
    ) -> DdsPublisher:
        """A writer for `topic`. `typestore` defines `msgtype` when it is not a standard ROS 2
        Humble type (e.g. the one a bag's embedded definitions build)."""
        msgtype = normalize_msgtype(msgtype)
        store = typestore or self.typestore
        writer = DataWriter(self._participant, self._topic(topic, msgtype, typestore), ros_qos(qos, depth, type_hash_user_data(msgtype, store)))
        pub = DdsPublisher(topic, msgtype, writer, typestore or self.typestore)
        with self._lock:
            self._publishers.append(pub)
        return pub

    def subscribe(
        self,
        topic: str,
        msgtype: str,
        callback: Callable[[Any], None],
        qos: QosName | str = "default",
        depth: int | None = None,
        decode: Decode = "ros",
    ) -> DdsSubscription:
        """Call `callback(msg)` on the dispatch thread for every message on `topic`.

        decode: "ros" -> rosbags type-store object (default; ROS field names, numpy arrays),
        "idl" -> cyclonedds IDL object (slow for images), "raw" -> CDR bytes with header.
        Keep callbacks short: one thread serves all subscriptions of this transport."""
        if decode not in ("ros", "idl", "raw"):
            raise ValueError(f"decode must be 'ros', 'idl' or 'raw', not '{decode}'")
        msgtype = normalize_msgtype(msgtype)
        reader = DataReader(self._participant, self._topic(topic, msgtype), ros_qos(qos, depth, type_hash_user_data(msgtype, self.typestore)))
        sub = DdsSubscription(topic, msgtype, reader, callback, decode, self.typestore)
        with self._lock:
            self._subs.append(sub)
            self._waitset.attach(sub.condition)
            if self._thread is None:
                self._thread = threading.Thread(target=self._dispatch, name="dds-dispatch", daemon=True)
                self._thread.start()
        self._wake.set(True)
        return sub

    def _dispatch(self) -> None:
        timeout = duration(milliseconds=200)  # bounded so close() is noticed even without a wake
        while not self._stop.is_set():
            self._waitset.wait(timeout)
            self._wake.take()
            with self._lock:
                subs = list(self._subs)
            for sub in subs:
                if self._stop.is_set():
                    return
                sub._drain()

    def close(self) -> None:
        """Stop the dispatch thread and delete every DDS entity of this transport. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set(True)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        with self._lock:
            for sub in self._subs:
                self._waitset.detach(sub.condition)
            entities: list[Any] = [s.condition for s in self._subs] + [s._reader for s in self._subs]
            entities += [p._writer for p in self._publishers]
            entities += [t for t, _ in self._topics.values()]
            self._subs.clear()
            self._publishers.clear()
            self._topics.clear()
        self._waitset.detach(self._wake)
        _delete(*entities, self._wake, self._waitset, self._participant)


def _delete(*entities: Any) -> None:
    """Delete DDS entities now rather than whenever Python collects them (their __del__ calls
    dds_delete once and forgets the handle, so a later collection is a no-op)."""
    for entity in entities:
        try:
            entity.__del__()
        except Exception:  # noqa: BLE001 - already deleted with its parent
            pass
