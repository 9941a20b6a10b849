"""How far DDS discovery reaches, decided from the environment exactly as the user's ROS 2
distribution decides it, so that vla_ros's Cyclone participants and ROS nodes on
rmw_cyclonedds find each other.

- Iron and later (Jazzy, Kilted, Rolling): `ROS_AUTOMATIC_DISCOVERY_RANGE` (OFF, LOCALHOST,
  SUBNET, SYSTEM_DEFAULT; unset = SUBNET; anything else = LOCALHOST with a warning, as rcl does)
  and `ROS_STATIC_PEERS` (';'-separated). `ROS_LOCALHOST_ONLY=1` still wins and means LOCALHOST
  without static peers. For LOCALHOST rmw_cyclonedds turns multicast off, numbers participants
  (at most 32 per host) and adds `localhost` as a unicast peer; it does not pick an interface.
- Humble and earlier (`ROS_DISTRO` names one): only `ROS_LOCALHOST_ONLY=1`, which binds Cyclone to
  127.0.0.1.
The fragment comes first and `CYCLONEDDS_URI` after it, as rmw_cyclonedds orders them, so a
user's own configuration (an interface list, peers) is merged over ours, never duplicated.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Mapping

log = logging.getLogger(__name__)

# Distributions whose rcl predates ROS_AUTOMATIC_DISCOVERY_RANGE (introduced in Iron).
_LEGACY_DISTROS = ("ardent", "bouncy", "crystal", "dashing", "eloquent", "foxy", "galactic", "humble")
RANGES = ("OFF", "LOCALHOST", "SUBNET", "SYSTEM_DEFAULT")
# rmw_cyclonedds' participant index bound for localhost discovery (one index per process).
MAX_AUTO_PARTICIPANT_INDEX = 32


@dataclass(frozen=True)
class Discovery:
    """The discovery settings in force: `range` is one of RANGES, or "LEGACY_LOCALHOST" /
    "LEGACY_DEFAULT" for Humble-style environments."""

    range: str
    static_peers: tuple[str, ...] = ()


def discovery_from_env(env: Mapping[str, str] | None = None) -> Discovery:
    env = os.environ if env is None else env
    distro = env.get("ROS_DISTRO", "").strip().lower()
    localhost_only = env.get("ROS_LOCALHOST_ONLY", "") == "1"  # compared exactly, as rcl does
    if distro in _LEGACY_DISTROS:
        return Discovery("LEGACY_LOCALHOST" if localhost_only else "LEGACY_DEFAULT")
    if localhost_only:
        return Discovery("LOCALHOST")
    raw = env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "")
    if raw == "":
        rng = "SUBNET"
    elif raw in RANGES:  # rcl compares case-sensitively
        rng = raw
    else:
        log.warning("invalid ROS_AUTOMATIC_DISCOVERY_RANGE '%s', assuming localhost only (as rcl does)", raw)
        rng = "LOCALHOST"
    peers = tuple(p for p in env.get("ROS_STATIC_PEERS", "").split(";") if p)
    if peers and rng in ("OFF", "SYSTEM_DEFAULT"):
        log.warning("ROS_STATIC_PEERS is ignored with ROS_AUTOMATIC_DISCOVERY_RANGE=%s (as rmw_cyclonedds does)", rng)
        peers = ()
    return Discovery(rng, peers)


def cyclone_fragment(discovery: Discovery, pid: int | None = None) -> str:
    """The <Domain> body rmw_cyclonedds would configure for these settings ('' when none)."""
    if discovery.range == "LEGACY_LOCALHOST":
        return '<General><Interfaces><NetworkInterface address="127.0.0.1"/></Interfaces></General>'
    if discovery.range in ("LEGACY_DEFAULT", "SYSTEM_DEFAULT"):
        return ""
    parts = []
    if discovery.range in ("OFF", "LOCALHOST"):
        parts.append("<General><AllowMulticast>false</AllowMulticast></General>")
    if discovery.range == "OFF":
        # a per-process tag: nobody else can match it, so nothing is discovered
        tag = os.getpid() if pid is None else pid
        parts.append(f"<Discovery><ParticipantIndex>none</ParticipantIndex><Tag>ros_discovery_off_{tag}</Tag></Discovery>")
        return "".join(parts)
    peers = (["localhost"] if discovery.range == "LOCALHOST" else []) + list(discovery.static_peers)
    peer_xml = "".join(f'<Peer address="{_xml_attr(p)}"/>' for p in peers)
    parts.append(
        "<Discovery><ParticipantIndex>auto</ParticipantIndex>"
        f"<MaxAutoParticipantIndex>{MAX_AUTO_PARTICIPANT_INDEX}</MaxAutoParticipantIndex>"
        + (f"<Peers>{peer_xml}</Peers>" if peer_xml else "")
        + "</Discovery>"
    )
    return "".join(parts)


def _xml_attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


# What ../shared/ros2/activate (and a careful single-machine user) sets: discovery on this
# host only and Cyclone bound to the loopback interface, so nothing reaches the network.
LOOPBACK_ENV = {
    "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    "CYCLONEDDS_URI": '<CycloneDDS><Domain><General><Interfaces><NetworkInterface name="lo"/></Interfaces></General></Domain></CycloneDDS>',
}


def keep_dds_on_loopback(env: dict[str, str] | None = None) -> dict[str, str]:
    """Force LOOPBACK_ENV into `env` (os.environ by default), whatever the shell had set, and
    drop static peers: tests and benches never send DDS traffic beyond this host's loopback."""
    target = os.environ if env is None else env
    target.update(LOOPBACK_ENV)
    target.pop("ROS_STATIC_PEERS", None)
    return target
