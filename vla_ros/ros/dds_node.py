"""The drive node over the ROS-less DDS transport: DriveNodeCore wired to Cyclone DDS topics."""
from __future__ import annotations

import logging
import signal
import threading
import time

from vla_ros.config import Config
from vla_ros.ros.clock import SimClock, WallClock
from vla_ros.ros.conversions import path_cdr_message
from vla_ros.ros.dds_transport import DdsTransport
from vla_ros.ros.heap import keep_large_blocks_out_of_arenas
from vla_ros.ros.node_core import DriveNodeCore, input_topics, output_topics
from vla_ros.ros.node_factory import make_node_core
from vla_ros.sensors.stamps import NS_PER_S

_LOG = logging.getLogger("vla_ros.node")

# InputTopic.qos -> the DDS transport's profile and depth ('state': best effort hears reliable
# publishers too; deep enough for 100 Hz states while a callback is busy)
_DDS_QOS = {"sensor": ("sensor", None), "state": ("sensor", 50), "latched": ("latched", None), "default": ("default", None)}

def run_dds_node(config: Config, use_sim_time: bool = False, duration_s: float | None = None, status_every_s: float = 5.0) -> int:
    """Load the model, run until SIGINT/SIGTERM (or `duration_s`), return an exit status."""
    from vla_ros.runtime.policy_process import load_node_policy  # heavy imports: only once we are really starting

    keep_large_blocks_out_of_arenas()  # a node runs for days: bounded heap fragmentation
    _LOG.info("loading model %s (%s, %s%s)", config.model.path, config.inference.backend, config.model.device,
              ", in a separate process" if config.inference.separate_process else "")
    policy, threads = load_node_policy(config)
    _LOG.info("model loaded (%d CPU threads)", threads)
    try:
        return _serve(config, policy, use_sim_time, duration_s, status_every_s)
    finally:
        if hasattr(policy, "close"):
            policy.close()


def _serve(config: Config, policy: object, use_sim_time: bool, duration_s: float | None, status_every_s: float) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    clock = SimClock() if use_sim_time else WallClock()
    with DdsTransport() as dds:
        pubs = {topic: dds.publisher(topic, msgtype) for topic, msgtype in output_topics(config).items()}
        core = make_node_core(config, policy, lambda topic, msg: pubs[topic].publish(msg), clock, model_name=config.model.path,
                              path_encoder=path_cdr_message)  # DDS writes bytes: skip building message objects
        for sub in input_topics(config):
            qos, depth = _DDS_QOS[sub.qos]
            dds.subscribe(sub.topic, sub.msgtype, _handler(core, sub.topic), qos=qos, depth=depth)
        if use_sim_time:
            dds.subscribe("/clock", "rosgraph_msgs/msg/Clock", lambda msg: core.on_clock(msg.clock.sec * NS_PER_S + msg.clock.nanosec), qos="clock")
        core.start()
        _LOG.info(
            "%s node running on DDS domain %d: %d cameras, inference %.0f Hz, control %.0f Hz%s",
            "arm" if config.chunk_mode else "drive",
            dds.domain_id,
            len(config.cameras),
            config.inference.rate_hz,
            config.control.hz,
            " (sim time from /clock)" if use_sim_time else "",
        )
        start = time.monotonic()
        next_status = start + status_every_s
        try:
            while not stop.wait(0.1):
                now = time.monotonic()
                if duration_s is not None and now - start >= duration_s:
                    break
                if status_every_s > 0 and now >= next_status:
                    next_status = now + status_every_s
                    _LOG.info("%s", core.status_line())
        finally:
            core.stop()
    _LOG.info("stopped: %s", core.status_line())
    return 0


def _handler(core: DriveNodeCore, topic: str):  # noqa: ANN202 - a closure
    return lambda msg: core.on_message(topic, msg)
