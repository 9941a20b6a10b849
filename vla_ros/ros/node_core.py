"""The drive node, independent of the transport (rclpy or ROS-less DDS).

Callbacks store camera and odometry messages (no decoding). Inference starts as soon as a new
complete set of camera frames is in (at most `inference.rate_hz`): it assembles a FrameStack,
runs the policy and hands the stamped trajectory to the control layer. A control timer at
`control.rate_hz` publishes the latest trajectory re-timed to now, or the safe fallback; its
phase is slowly locked to when results become ready, so a new trajectory goes out a few ms after
it is computed while the publishing period stays steady. A diagnostics timer publishes status
at 1 Hz. All times are ROS time from the injected clock (system, or /clock with use_sim_time).

A transport adapter only has to: call `on_message(topic, msg)` from its subscriptions, call
`on_clock(stamp_ns)` for /clock when using sim time, and provide `publish(topic, msg)` for the
messages the core builds (rosbags type-store objects with ROS field names).
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from vla_ros.config import Config
from vla_ros.control.controller import TrajectoryController
from vla_ros.control.trajectory import OdomTrajectory, PlannedTrajectory
from vla_ros.control.validation import RejectedOutput
from vla_ros.ros import messages
from vla_ros.ros.autoware_msgs import TRAJECTORY as AUTOWARE_TRAJECTORY
from vla_ros.ros.autoware_msgs import autoware_trajectory
from vla_ros.ros.clock import Clock, SimClock, Timer
from vla_ros.ros.conversions import latency_message, path_message
from vla_ros.ros.inference_trigger import InferenceTrigger
from vla_ros.runtime.inputs import PolicyInputs, RouteRefusedError
from vla_ros.runtime.tick_seed import tick_seed
from vla_ros.sensors.frame_stack import FrameStack, StackSkip
from vla_ros.sensors.instruction import InstructionInput, navigation_rule
from vla_ros.sensors.pipeline import SensingPipeline
from vla_ros.sensors.stamps import StampError

_LOG = logging.getLogger("vla_ros.node")

DIAGNOSTICS_PERIOD_S = 1.0
_LATENCY_WINDOW = 200
# Phase lock of the control timer: publish this long after a result is usually ready (the 97th
# percentile of recent inference times), moving the schedule by at most MAX_STEP per tick.
_PUBLISH_MARGIN_NS = 3_000_000
_ALIGN_MAX_STEP_NS = 2_000_000
_READY_PERCENTILE = 97
# Inputs dropped for their stamps keep the inputs diagnostic at WARN this long.
_STAMP_WARN_NS = 10_000_000_000
_STAMP_DROPS = {"future_stamp": "inputs stamped ahead of the node's clock", "stale_stamp": "inputs stamped far behind their stream"}


class PolicyLike(Protocol):
    """What the node needs of a policy (vla_ros.runtime.Policy satisfies it)."""

    def act(self, stack: FrameStack, *, reasoning: bool, max_reasoning_tokens: int | None, samples: int, steps: int | None,
            noise_scale: float = 1.0, seed: int | None = None) -> Any: ...


Publish = Callable[[str, Any], None]

# The message type of each output topic (config.outputs key -> type); every transport creates
# its publishers from this table.
OUTPUT_TYPES = {
    "trajectory_topic": "nav_msgs/msg/Path",
    "reasoning_topic": "std_msgs/msg/String",
    "diagnostics_topic": "diagnostic_msgs/msg/DiagnosticArray",
    "latency_topic": "std_msgs/msg/Float64MultiArray",
    "autoware_trajectory_topic": AUTOWARE_TRAJECTORY,
}


@dataclass(frozen=True)
class InputTopic:
    """A subscription every transport makes. qos: 'sensor' (cameras: best effort, shallow),
    'state' (odometry, joint states: best effort, so it hears reliable publishers too, deep
    enough for 100 Hz while a callback is busy), 'latched' (an instruction: reliable and
    transient local, so a late node still gets the last one), 'default' (reliable, volatile: the
    same instruction from publishers that do not latch)."""

    topic: str
    msgtype: str
    qos: str


def input_topics(config: Config) -> list[InputTopic]:
    inputs = [InputTopic(c.topic, "sensor_msgs/msg/CompressedImage" if c.compressed else "sensor_msgs/msg/Image", "sensor")
              for c in config.cameras]
    if config.chunk_mode:
        inputs.append(InputTopic(config.arm.joint_state_topic, messages.JOINT_STATE, "state"))
        # both durabilities: a transient-local reader does not match a volatile writer, a volatile one misses the latched value
        inputs += [InputTopic(config.arm.instruction_topic, "std_msgs/msg/String", q) for q in ("latched", "default")]
    else:
        inputs.append(InputTopic(config.ego.odometry_topic, "nav_msgs/msg/Odometry", "state"))
        if config.navigation.topic:
            inputs += [InputTopic(config.navigation.topic, "std_msgs/msg/String", q) for q in ("latched", "default")]
    return inputs


def output_topics(config: Config, autoware: bool = True) -> dict[str, str]:
    """topic -> message type of everything the node publishes in its mode."""
    out = config.outputs
    topics = {out.reasoning_topic: OUTPUT_TYPES["reasoning_topic"], out.diagnostics_topic: OUTPUT_TYPES["diagnostics_topic"],
              out.latency_topic: OUTPUT_TYPES["latency_topic"]}
    if config.chunk_mode:
        if config.arm.joint_trajectory_topic:
            topics[config.arm.joint_trajectory_topic] = messages.JOINT_TRAJECTORY
        if config.arm.forward_command_topic:
            topics[config.arm.forward_command_topic] = "std_msgs/msg/Float64MultiArray"
    else:
        topics[out.trajectory_topic] = OUTPUT_TYPES["trajectory_topic"]
        if autoware and out.autoware_trajectory_topic:
            topics[out.autoware_trajectory_topic] = OUTPUT_TYPES["autoware_trajectory_topic"]
    return topics


class DriveNodeCore:
    def __init__(
        self, config: Config, policy: PolicyLike, publish: Publish, clock: Clock, model_name: str = "", autoware: bool = True,
        path_encoder: Callable[[OdomTrajectory, str], Any] = path_message,
    ) -> None:
        """`autoware`: also publish autoware_planning_msgs/Trajectory (when its topic is set).
        `path_encoder(trajectory, frame_id)`: what `publish` gets for the trajectory topic (a
        nav_msgs/Path message by default; a transport that writes bytes can take CDR)."""
        self.config = config = config.resolve_topics()  # one set of absolute names for every topic comparison
        self.policy = policy
        self.publish = publish
        self.clock = clock
        self.model_name = model_name
        self.autoware_topic = config.outputs.autoware_trajectory_topic if autoware else ""
        self.path_encoder = path_encoder
        size = None if config.image.override_model else getattr(policy, "image_size_hw", None)
        self.pipeline = SensingPipeline(config, image_size_hw=size)
        self.controller = self._make_controller(config)
        self.tick_skips: dict[str, int] = {}
        self.inference_errors = 0
        self.ticks_run = 0
        self.published = 0
        self.last_published_stamp_ns: int | None = None
        self._latency_ms: deque[float] = deque(maxlen=_LATENCY_WINDOW)  # policy time per tick
        self._run_ns: deque[int] = deque(maxlen=_LATENCY_WINDOW)  # trigger to accepted output
        self._last_error: str = ""
        self._lock = threading.Lock()
        self.trigger = InferenceTrigger(clock, config.inference.rate_hz, lambda: self.pipeline.input_t0_ns(include_ego=False), self.inference_tick,
                                        due=self._inference_due)
        self.control_timer = Timer("control", clock, 1.0 / config.control.hz, self.control_tick,
                                   realtime_priority=config.control.realtime_priority)
        self.diagnostics_timer = Timer("diagnostics", clock, DIAGNOSTICS_PERIOD_S, self.diagnostics_tick)
        self._locked = False
        self._stamp_drops_seen: dict[str, tuple[int, int | None]] = {}  # reason -> (count, when it last grew)
        # each camera's index in the model's camera set (None: not all given), for prompts that name them
        ids = tuple(c.camera_id for c in config.cameras)
        self.camera_ids = ids if min(ids) >= 0 else None
        self._needs_camera_ids = bool(getattr(policy, "needs_camera_ids", False))
        # std_msgs/String inputs by topic: the vehicle's navigation instruction, an arm's task
        self.text_inputs: dict[str, InstructionInput] = {}
        self.navigation: InstructionInput | None = None
        if config.navigation.topic and not config.chunk_mode:
            self.navigation = InstructionInput(config.navigation.topic, self.pipeline.drops,
                                               **navigation_rule(config.navigation.max_age_s))
            self.text_inputs[config.navigation.topic] = self.navigation

    _state_name = "odometry"  # the state stream, as diagnostics name it

    def _make_controller(self, config: Config) -> Any:
        return TrajectoryController(config)

    # -- lifecycle ------------------------------------------------------------------------

    def top_skips(self, n: int = 3) -> str:
        """The most frequent skip reasons, e.g. 'inference_busy x12, ego_history_short x15'."""
        items = sorted(self.skipped_ticks().items(), key=lambda kv: -kv[1])[:n]
        return ", ".join(f"{k} x{v}" for k, v in items)

    def start(self) -> None:
        self.trigger.start()
        self.control_timer.start()
        self.diagnostics_timer.start()

    def stop(self) -> None:
        self.trigger.stop()
        self.control_timer.stop()
        self.diagnostics_timer.stop()
        self.pipeline.close()

    # -- inputs ---------------------------------------------------------------------------

    def on_message(self, topic: str, msg: Any) -> None:
        """A camera, state or instruction message (any transport). Never raises on bad input."""
        try:
            # Stamps further ahead of this clock than sensing.future_tolerance_s are refused
            # (not before a /clock message has set sim time).
            now_ns = self.clock.now_ns() if self.clock.started() else None
            text_input = self.text_inputs.get(topic)
            if text_input is not None:
                text_input.on_message(msg, now_ns)
                return
            stored = self.pipeline.on_message(topic, msg, now_ns)
            if stored and topic == self.pipeline.ego.topic:
                self._note_state(msg)
            elif stored:
                self.trigger.notify()
        except (ValueError, StampError) as exc:
            self.pipeline.drops.drop("bad_message", topic, str(exc))
        except Exception as exc:  # noqa: BLE001 - a malformed message must not stop the node
            self.pipeline.drops.drop("bad_message", topic, f"{type(exc).__name__}: {exc}")

    def _note_state(self, msg: Any) -> None:
        """A stored state message: the controller's latest ego state (its fallback starts there),
        as the ego buffer parsed it on receipt."""
        state = self.pipeline.ego.newest()
        if state is not None:
            self.controller.note_ego(state)

    def on_clock(self, stamp_ns: int) -> None:
        """A /clock message (use_sim_time); ignored with the system clock."""
        if isinstance(self.clock, SimClock):
            previous = self.clock.now_ns() if self.clock.started() else None
            self.clock.set(stamp_ns)
            if previous is not None:
                self.pipeline.clock_moved(stamp_ns, previous)

    # -- timers ---------------------------------------------------------------------------

    def inference_tick(self, now_ns: int) -> None:
        t_start = time.perf_counter()
        result = self.pipeline.assemble(now_ns)
        stack_ms = (time.perf_counter() - t_start) * 1e3
        if isinstance(result, StackSkip):
            self._count_skip(result.key)
            return
        self.controller.note_input(result.t0_ns)
        request = self._policy_request(result, now_ns)
        if request is None:
            return
        inputs, extra = request
        try:
            inf = self.config.inference
            t_call = time.perf_counter()
            # the policy draws the (scaled) start noise itself: no torch in this process, no tensor to send
            if inf.noise_scale > 0:  # the tick's noise from (inference.seed, t0), as vla-ros eval draws it
                extra["seed"] = tick_seed(inf.seed, result.t0_ns)
            out = self.policy.act(inputs, reasoning=inf.reasoning, max_reasoning_tokens=inf.max_reasoning_tokens, samples=1,
                                  steps=inf.steps, noise_scale=inf.noise_scale, **extra)
            call_ms = (time.perf_counter() - t_call) * 1e3
        except Exception as exc:  # noqa: BLE001 - one failed inference is reported, the next tick runs
            self.inference_errors += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            route = getattr(inputs, "task", None) if self.navigation is not None else None
            if route and isinstance(exc, RouteRefusedError):  # drive without it from the next tick
                self.navigation.reject(route, str(exc))
            self._count_skip("inference_error")
            if self.inference_errors == 1:
                _LOG.error("inference failed at t0=%.3f: %s\n%s", result.t0, exc, traceback.format_exc())
            else:
                _LOG.warning("inference failed at t0=%.3f: %s", result.t0, exc)
            return
        self.ticks_run += 1
        done_ns = self.clock.now_ns()
        try:
            self._accept(out, result, done_ns)
        except RejectedOutput as exc:
            self._count_skip(f"rejected_output/{exc.reason}")
            return
        timings = out.timings.as_dict()
        total = float(timings.get("total_ms", sum(v for k, v in timings.items() if k.endswith("_ms"))))
        self._latency_ms.append(total)
        latency = {
            "t0_s": result.t0,
            "stack_ms": stack_ms,
            **{k if k.endswith("_ms") else f"{k}_ms": float(v) for k, v in timings.items()},
            "policy_total_ms": total,
            "input_to_output_ms": (done_ns - result.t0_ns) / 1e6,
            "start_delay_ms": (now_ns - result.t0_ns) / 1e6,
            "policy_call_ms": call_ms,
        }
        self.publish(self.config.outputs.latency_topic, latency_message(latency))
        if self.config.inference.reasoning and out.reasoning:
            self.publish(self.config.outputs.reasoning_topic, messages.string(out.reasoning))
        self._run_ns.append(done_ns - now_ns)
        self._lock_publish_phase(now_ns)

    def _inference_due(self, now_ns: int) -> bool:
        """Whether an inference is wanted now, beyond new frames and the rate limit (always, for a vehicle)."""
        return True

    def _policy_request(self, stack: FrameStack, now_ns: int) -> tuple[Any, dict[str, Any]] | None:
        """What the policy gets for this stack, and extra keywords for `act` (None: skip, counted).
        With a navigation input: the instruction in force (none: the model drives without) and
        each camera's id, which a navigation model's prompt names."""
        route = self.navigation.current(now_ns) if self.navigation is not None else ""
        if not route and not self._needs_camera_ids:
            return stack, {}
        return PolicyInputs.from_stack(stack, task=route or None, camera_ids=self.camera_ids), {}

    def _accept(self, out: Any, stack: FrameStack, done_ns: int) -> None:
        """Hand the policy's output to the controller (RejectedOutput when it is refused)."""
        traj = PlannedTrajectory(
            t0_ns=stack.t0_ns,
            dt_s=float(out.dt),
            xyz=np.asarray(out.xyz[0], dtype=np.float64),
            rot=np.asarray(out.rot[0], dtype=np.float64),
            pose_t0_xyz=stack.history.pose_t0_xyz,
            pose_t0_rot=stack.history.pose_t0_rot,
            reasoning=out.reasoning,
            # the model's physical actions, checked against the safety limits by name (control/validation.py)
            actions=np.asarray(out.actions[0], dtype=np.float64),
            action_names=tuple(out.action_names),
            action_units=tuple(out.action_units),
        )
        self.controller.accept(traj, done_ns)

    def _lock_publish_phase(self, started_ns: int) -> None:
        """Nudge the control timer so its ticks fall just after results are usually ready."""
        ready_ns = int(np.percentile(list(self._run_ns), _READY_PERCENTILE))
        target = started_ns + ready_ns + _PUBLISH_MARGIN_NS
        step = _ALIGN_MAX_STEP_NS if self._locked else self.control_timer.period_ns // 2
        self.control_timer.align(target, step)
        self._locked = True

    def control_tick(self, now_ns: int) -> None:
        # Input age comes from the buffers, not from finished stacks: a long inference must not
        # look like a camera failure, and a dead camera must be noticed while it runs.
        t0 = self.pipeline.input_t0_ns()
        if t0 is not None:
            self.controller.note_input(t0)
        step = self.controller.step(now_ns)
        if step.command is None:
            return
        self.publish(self.config.outputs.trajectory_topic, self.path_encoder(step.command, self.config.outputs.frame_id))
        if self.autoware_topic:
            self.publish(self.autoware_topic, autoware_trajectory(step.command, self.config.outputs.frame_id))
        with self._lock:
            self.published += 1
            self.last_published_stamp_ns = int(step.command.stamp_ns)

    def diagnostics_tick(self, now_ns: int) -> None:
        self.publish(self.config.outputs.diagnostics_topic, messages.diagnostic_array(now_ns, self.diagnostic_statuses(now_ns)))

    # -- status ---------------------------------------------------------------------------

    def _count_skip(self, key: str) -> None:
        with self._lock:
            self.tick_skips[key] = self.tick_skips.get(key, 0) + 1

    def skipped_ticks(self) -> dict[str, int]:
        """Inference ticks that produced no output, by reason (sensing skips included)."""
        with self._lock:
            counts = dict(self.tick_skips)
        if self.trigger.passed_over:
            counts["inference_busy"] = self.trigger.passed_over  # frame sets that came while one ran
        for key, n in self.pipeline.stats()["skipped_by_reason"].items():
            counts[key] = n
        return dict(sorted(counts.items()))

    def status_line(self) -> str:
        """One line for a console: what ran, what was skipped and why, latency, fallback."""
        p50, p95 = self.latency_percentiles()
        skipped = self.skipped_ticks()
        lat = "n/a" if p50 is None else f"{p50:.0f}/{p95:.0f} ms"
        return (
            f"ticks run {self.ticks_run}, skipped {sum(skipped.values())} ({self.top_skips()}), published {self.published}, "
            f"latency p50/p95 {lat}, fallback {'ACTIVE' if self.controller.fallback_active else 'off'}"
        )

    def latency_percentiles(self) -> tuple[float | None, float | None]:
        values = list(self._latency_ms)
        if not values:
            return None, None
        return float(np.percentile(values, 50)), float(np.percentile(values, 95))

    def _stamp_problems(self, now_ns: int, drops: dict[str, int]) -> list[str]:
        """Inputs dropped for their stamps (future_stamp, stale_stamp) within the last
        _STAMP_WARN_S: the inputs status stays WARN that long after the last one."""
        problems = []
        for reason, what in _STAMP_DROPS.items():
            count = drops.get(reason, 0)
            seen_count, seen_ns = self._stamp_drops_seen.get(reason, (0, None))
            if count != seen_count:
                seen_ns = now_ns if count > seen_count else None  # fewer: counters were cleared
                self._stamp_drops_seen[reason] = (count, seen_ns)
            if seen_ns is not None and 0 <= now_ns - seen_ns < _STAMP_WARN_NS:
                problems.append(f"{what} ({reason} x{count})")
        return problems

    def diagnostic_statuses(self, now_ns: int) -> list[Any]:
        stats = self.pipeline.stats()
        name = "vla_ros"
        model = messages.diagnostic_status(f"{name}: model", messages.DIAG_OK, "loaded", {"model": self.model_name, "backend": self.config.inference.backend})
        ages = {}
        worst = 0.0
        for cam in self.pipeline.cameras:
            age = None if cam.newest_ns is None else (now_ns - cam.newest_ns) / 1e9
            ages[f"input_age_s/{cam.name}"] = "never" if age is None else f"{age:.3f}"
            worst = max(worst, float("inf") if age is None else age)
        ego_age = None if self.pipeline.ego.newest_ns is None else (now_ns - self.pipeline.ego.newest_ns) / 1e9
        ages[f"input_age_s/{self._state_name}"] = "never" if ego_age is None else f"{ego_age:.3f}"
        problems = [] if worst <= self.config.safety.max_input_age_s else ["camera input stale or missing"]
        problems += self._stamp_problems(now_ns, stats["drops"])
        input_level = messages.DIAG_WARN if problems else messages.DIAG_OK
        inputs = messages.diagnostic_status(
            f"{name}: inputs",
            input_level,
            "; ".join(problems) or "ok",
            {**ages, **{f"dropped/{k}": str(v) for k, v in stats["drops"].items()}, "time_jumps": str(stats["time_jumps"]),
             **self._navigation_values(now_ns)},
        )
        p50, p95 = self.latency_percentiles()
        skipped = self.skipped_ticks()
        inference = messages.diagnostic_status(
            f"{name}: inference",
            messages.DIAG_OK if not self._last_error else messages.DIAG_WARN,
            "ok" if not self._last_error else f"last error: {self._last_error}",
            {
                "ticks_run": str(self.ticks_run),
                "latency_ms_p50": "n/a" if p50 is None else f"{p50:.1f}",
                "latency_ms_p95": "n/a" if p95 is None else f"{p95:.1f}",
                "errors": str(self.inference_errors),
                **{f"skipped/{k}": str(v) for k, v in skipped.items()},
            },
        )
        return [model, inputs, inference, self._control_status(now_ns)]

    def _navigation_values(self, now_ns: int) -> dict[str, str]:
        """The navigation instruction in force (or why none), its age, changes and expired ticks."""
        nav = self.navigation
        if nav is None:
            return {}
        age = nav.age_s(now_ns)
        in_force = nav.in_force(now_ns)
        return {"navigation": in_force or ("(expired) " + nav.latest if nav.latest else "(none)"),
                "navigation_age_s": "never" if age is None else f"{age:.1f}",
                "navigation_changes": str(nav.changes), "navigation_expired_ticks": str(nav.expired)}

    def _control_status(self, now_ns: int) -> Any:
        fallback = self.controller.fallback_active
        wd = self.controller.watchdog.check(now_ns)
        return messages.diagnostic_status(
            "vla_ros: control",
            messages.DIAG_ERROR if fallback else messages.DIAG_OK,
            f"fallback active: {', '.join(wd.reasons) or 'output expired'}" if fallback else "following policy",
            {
                "fallback_active": str(fallback).lower(),
                "fallback_activations": str(self.controller.stats.fallback_activations),
                "published": str(self.published),
                "control_thread": self.control_timer.scheduling,
                **{f"rejected/{k}": str(v) for k, v in self.controller.stats.rejected.items()},
            },
        )
