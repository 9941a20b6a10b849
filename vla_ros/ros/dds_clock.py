"""Publishing simulated time on /clock (rosgraph_msgs/Clock) over the DDS transport, as
`ros2 bag play --clock` does: nodes with use_sim_time follow it."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from vla_ros.ros import messages
from vla_ros.ros.dds_transport import DdsTransport

CLOCK_TOPIC = "/clock"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"


class ClockPublisher:
    """Publishes `now_ns()` on /clock at `rate_hz` from its own thread.

    `now_ns` returns the simulated time to announce, or None to skip a tick (e.g. paused).
    QoS is rclcpp's ClockQoS (best effort, keep last 1), which rclcpp and rclpy time sources
    subscribe with."""

    def __init__(
        self,
        transport: DdsTransport,
        now_ns: Callable[[], int | None],
        rate_hz: float = 100.0,
        topic: str = CLOCK_TOPIC,
    ) -> None:
        if not rate_hz > 0:
            raise ValueError(f"clock rate must be positive, got {rate_hz}")
        self._pub = transport.publisher(topic, CLOCK_TYPE, qos="clock")
        self._now_ns = now_ns
        self._period = 1.0 / rate_hz
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_ns: int | None = None

    @property
    def published(self) -> int:
        return self._pub.published

    def publish(self, now_ns: int) -> None:
        self._pub.publish(messages.clock(now_ns))
        self.last_ns = now_ns

    def start(self) -> "ClockPublisher":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dds-clock", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            now = self._now_ns()
            if now is not None:
                self.publish(now)
            # Fixed-rate schedule without drift; after a stall, skip missed ticks.
            next_t += self._period
            delay = next_t - time.monotonic()
            if delay < 0:
                next_t = time.monotonic()
                delay = 0.0
            self._stop.wait(delay)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
