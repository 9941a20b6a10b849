"""The node for a robot arm (control.mode chunk), independent of the transport.

What differs from the vehicle node (DriveNodeCore, whose inputs, timers, latency reporting and
diagnostics it keeps):
- inputs: sensor_msgs/JointState (the model's state, by joint name) instead of odometry, and the
  task on a std_msgs/String instruction topic (the latest one is used; a change is logged and
  shown in diagnostics; an empty one is dropped and counted);
- inference is asynchronous: it starts when the current chunk has less than the measured latency
  (97th percentile) plus `arm.start_margin_s` left, with the leftover of the current chunk as the
  real-time-chunking guide (`arm.rtc`), so the next chunk joins the one executing;
- the control timer (`control.rate_hz`, 50 Hz by default) publishes the command due now from the
  current chunk, or holds position, as trajectory_msgs/JointTrajectory (one point, reached one
  control period later: what joint_trajectory_controller follows) and/or std_msgs/Float64MultiArray
  positions (forward_command_controller), in `arm.command_joints` order.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from vla_ros.config import Config
from vla_ros.control.chunk_controller import ActionChunk, ChunkController
from vla_ros.ros import messages
from vla_ros.ros.clock import Clock
from vla_ros.ros.node_core import DriveNodeCore, PolicyLike, Publish
from vla_ros.runtime.inputs import PolicyInputs
from vla_ros.runtime.chunk_guide import ChunkGuide
from vla_ros.sensors.frame_stack import FrameStack
from vla_ros.sensors.instruction import InstructionInput

_LOG = logging.getLogger("vla_ros.node")

_LATENCY_PERCENTILE = 97
# Until a few inferences have been timed, assume this latency for scheduling and the RTC delay.
_INITIAL_LATENCY_S = 0.2


class ArmNodeCore(DriveNodeCore):
    def __init__(self, config: Config, policy: PolicyLike, publish: Publish, clock: Clock, model_name: str = "") -> None:
        self.prompt_truncations = 0
        super().__init__(config, policy, publish, clock, model_name=model_name, autoware=False)
        self.arm = self.config.arm  # topic names resolved by the base class
        self.instruction = InstructionInput(self.arm.instruction_topic, self.pipeline.drops, initial=self.arm.instruction)
        self.text_inputs[self.arm.instruction_topic] = self.instruction

    def _make_controller(self, config: Config) -> ChunkController:
        return ChunkController(config)

    # -- inputs ---------------------------------------------------------------------------

    def _note_state(self, msg: Any) -> None:
        sample = self.pipeline.ego.newest()
        if sample is not None:
            self.controller.note_state(sample)

    # -- inference ------------------------------------------------------------------------

    def latency_estimate_s(self) -> float:
        """How long from starting an inference to its chunk being accepted (97th percentile)."""
        if len(self._run_ns) < 3:
            return _INITIAL_LATENCY_S
        return float(np.percentile(list(self._run_ns), _LATENCY_PERCENTILE)) / 1e9

    def _inference_due(self, now_ns: int) -> bool:
        return self.controller.wants_inference(now_ns, self.latency_estimate_s())

    def _policy_request(self, stack: FrameStack, now_ns: int) -> tuple[Any, dict[str, Any]] | None:
        task = self.instruction.current(now_ns)
        if not task:
            self._count_skip("no_instruction")
            return None
        inputs = PolicyInputs.from_stack(stack, task=task)
        extra: dict[str, Any] = {}
        # the new chunk's actions are due from t0: its delay counts from the inputs' stamp, not from now
        prefix = self.controller.rtc_prefix(stack.t0_ns, self.latency_estimate_s() + max(0, now_ns - stack.t0_ns) / 1e9)
        if prefix is not None:
            rtc = self.arm.rtc
            extra["guide"] = ChunkGuide(leftover=prefix.leftover, inference_delay=prefix.inference_delay,
                                        execution_horizon=prefix.execution_horizon, schedule=rtc.schedule,
                                        max_guidance_weight=rtc.max_guidance_weight)
        return inputs, extra

    def _accept(self, out: Any, stack: FrameStack, done_ns: int) -> None:
        if out.prompt_tokens_dropped:
            self.prompt_truncations += 1
            self.pipeline.drops.drop("instruction_truncated", self.instruction.topic,
                                     f"{out.prompt_tokens_dropped} tokens beyond the model's budget cut off")
        chunk = ActionChunk(t0_ns=stack.t0_ns, dt_s=self.arm.action_dt_s, positions=np.asarray(out.actions[0], dtype=np.float64),
                            raw=np.asarray(out.raw_actions[0], dtype=np.float64))
        self.controller.accept(chunk, done_ns)

    def _lock_publish_phase(self, started_ns: int) -> None:
        """Commands go out on a steady clock; a chunk spans many of them, so no phase lock."""

    # -- control --------------------------------------------------------------------------

    def control_tick(self, now_ns: int) -> None:
        t0 = self.pipeline.input_t0_ns(include_ego=False)
        if t0 is not None:
            self.controller.note_input(t0)
        step = self.controller.step(now_ns)
        if self.controller.wants_inference(now_ns, self.latency_estimate_s()):
            self.trigger.notify()
        if step.positions is None:  # no joint state known yet: nothing to hold or follow
            return
        joints = self.arm.command_joints
        if self.arm.joint_trajectory_topic:
            # the controller reaches its point one period later: the chunk's position due then
            period = 1.0 / self.config.control.hz
            point = messages.joint_trajectory_point(step.next_positions, step.velocities, period)
            self.publish(self.arm.joint_trajectory_topic, messages.joint_trajectory(int(step.stamp_ns), joints, [point]))
        if self.arm.forward_command_topic:
            self.publish(self.arm.forward_command_topic, messages.float64_multiarray(joints, step.positions))
        with self._lock:
            self.published += 1
            self.last_published_stamp_ns = int(step.stamp_ns)

    # -- status ---------------------------------------------------------------------------

    _state_name = "joint_states"

    def status_line(self) -> str:
        p50, p95 = self.latency_percentiles()
        skipped = self.skipped_ticks()
        lat = "n/a" if p50 is None else f"{p50:.0f}/{p95:.0f} ms"
        stats = self.controller.stats
        return (f"chunks run {self.ticks_run}, skipped {sum(skipped.values())} ({self.top_skips()}), commands {self.published}, "
                f"latency p50/p95 {lat}, hold {'ACTIVE' if self.controller.holding else 'off'}, "
                f"largest join step {stats.max_join_position_step:.4f}")

    def _control_status(self, now_ns: int) -> Any:
        stats = self.controller.stats
        holding = self.controller.holding
        values = {
            "hold_active": str(holding).lower(),
            "hold_reasons": ", ".join(self.controller.hold_reasons) or "none",
            "published": str(self.published),
            "chunks_accepted": str(stats.accepted),
            "largest_join_position_step": f"{stats.max_join_position_step:.6f}",
            "largest_join_velocity_step": f"{stats.max_join_velocity_step:.6f}",
            "late_ticks": str(stats.late_ticks),
            "late_chunk_ticks": str(stats.late_chunk_ticks),
            "rtc_fallbacks": str(stats.rtc_fallbacks),
            "instruction": self.instruction.latest or "(none)",
            "instruction_changes": str(self.instruction.changes),
            "instruction_truncations": str(self.prompt_truncations),
            "latency_estimate_ms": f"{self.latency_estimate_s() * 1e3:.1f}",
            "rtc": "on" if self.arm.rtc.enabled else f"off (blend {self.arm.rtc.blend_steps} actions)",
            "control_thread": self.control_timer.scheduling,
            **{f"rejected/{k}": str(v) for k, v in stats.rejected.items()},
            **{f"hold/{k}": str(v) for k, v in stats.hold_ticks.items()},
        }
        return messages.diagnostic_status(
            "vla_ros: control", messages.DIAG_ERROR if holding else messages.DIAG_OK,
            f"holding position: {', '.join(self.controller.hold_reasons) or 'no chunk'}" if holding else "following policy chunks",
            values)
