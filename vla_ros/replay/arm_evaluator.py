"""Open-loop evaluation of one robot-arm bag (control.mode chunk): replay it through the sensing
pipeline in sim time and, at every tick with a stack (cameras + the joint state at t0), an
instruction and a complete recorded future, run the policy and compare its chunk with the
recorded commands: action i is due at t0 + i * arm.action_dt_s. The hold-position baseline keeps
the joint state at t0 for the whole chunk.

The instruction of a tick is the newest non-empty one received at or before the tick (the node's rule,
replay/instruction_track.py), else arm.instruction; none at all skips the tick (no_instruction). An
instruction longer than the model's token budget is cut as the model cuts it (LeRobot's rule); the
ticks the policy reports it for (PolicyOutput.prompt_tokens_dropped) are counted
(warnings.instruction_truncated) and it is logged once per instruction; they are still evaluated.

Deterministic as the vehicle evaluation is: the noise at a tick is seeded by (seed, t0).
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla_ros.config import Config
from vla_ros.replay.bag_io import bag_info
from vla_ros.replay.command_track import CommandTrack
from vla_ros.replay.evaluator import EvalOptions, _sum_counts, ablate, count_policy_error, model_info, tick_timings
from vla_ros.replay.ground_truth import FutureUnavailable
from vla_ros.replay.instruction_track import InstructionTrack
from vla_ros.replay.tick_replay import evaluated_stacks
from vla_ros.runtime.tick_seed import tick_seed
from vla_ros.sensors.pipeline import SensingPipeline

_LOG = logging.getLogger("vla_ros.replay")


@dataclass
class ArmTickRecord:
    """One evaluated tick; joint arrays in arm.joint_names order."""

    bag: str
    index: int
    tick_ns: int
    t0_ns: int
    instruction: str
    state: np.ndarray  # (J,) joint positions at t0 (the hold baseline)
    commanded: np.ndarray  # (T, J) recorded commands at t0 + i * dt
    predicted: np.ndarray  # (S, T, J) the policy's chunks (sample 0 is the one a node executes)
    timings_ms: dict[str, float]
    truncated_tokens: int = 0  # prompt tokens cut off by the model's token budget

    @property
    def model_error(self) -> np.ndarray:
        """(T, J) predicted (sample 0) minus commanded."""
        return self.predicted[0] - self.commanded

    @property
    def hold_error(self) -> np.ndarray:
        """(T, J) the state at t0 held, minus commanded."""
        return self.state[None, :] - self.commanded

    @property
    def mae(self) -> float:
        return float(np.abs(self.model_error).mean())


@dataclass
class ArmBagEvaluation:
    name: str
    path: str
    dt_s: float
    joint_names: tuple[str, ...]
    steps: int  # actions per chunk (T)
    samples: int
    ticks_total: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    records: list[ArmTickRecord] = field(default_factory=list)
    missing_topics: list[str] = field(default_factory=list)
    sensing: dict[str, Any] = field(default_factory=dict)
    commands: dict[str, Any] = field(default_factory=dict)
    instructions: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    wall_s: float = 0.0
    model_info: dict[str, Any] = field(default_factory=dict)

    @property
    def ticks_evaluated(self) -> int:
        return len(self.records)


def evaluate_arm_ticks(
    bag: str | Path,
    config: Config,
    policy: Any,
    options: EvalOptions,
    name: str | None = None,
    first: int = 0,
    stop: int | None = None,
    progress_position: int = 0,
    progress_label: str = "",
) -> ArmBagEvaluation:
    """Evaluate the ticks [first, stop) of one arm bag. Bad input never raises: it is counted in
    `skipped` (by reason), `warnings` or the sensing drops, or, if the bag stops being readable,
    noted in `error`."""
    from vla_ros.runtime.inputs import PolicyInputs

    start = time.perf_counter()
    bag = Path(bag)
    arm = config.resolve_topics().arm
    T = int(policy.num_waypoints)
    dt = arm.action_dt_s
    result = ArmBagEvaluation(name or bag.stem, str(bag), dt, arm.joint_names, T, options.samples, model_info=model_info(policy))
    info = bag_info(bag)
    wanted = [c.topic for c in config.resolve_topics().cameras] + [arm.joint_state_topic, arm.joint_trajectory_topic]
    if not arm.instruction:
        wanted.append(arm.instruction_topic)
    result.missing_topics = [t for t in wanted if info.message_counts.get(t, 0) == 0]
    commands = CommandTrack.from_bag(bag, arm.joint_trajectory_topic, arm.joint_names)
    result.commands = commands.stats()

    size = None if config.image.override_model else getattr(policy, "image_size_hw", None)
    pipeline = SensingPipeline(config, image_size_hw=size, decode_threads=options.decode_threads)
    instructions = InstructionTrack(bag, arm.instruction_topic, pipeline.drops, count_earlier=first == 0, initial=arm.instruction)
    result.instructions = instructions.stats()
    if hasattr(policy, "vision_cache"):
        policy.vision_cache.clear()  # keyed by (camera, stamp): another bag may reuse the stamps
    steps_ns = np.round(np.arange(T) * dt * 1e9).astype(np.int64)
    logged: set[str] = set()
    for tick, stack, stack_ms in evaluated_stacks(bag, pipeline, options, result, first, stop, progress_position, progress_label):
        task = instructions.at(tick.time_ns)
        if task is None:
            result.skipped["no_instruction"] += 1
            continue
        try:
            commanded = commands.at(stack.t0_ns + steps_ns)
        except FutureUnavailable as exc:
            result.skipped[exc.key] += 1
            continue
        t_policy = time.perf_counter()
        try:
            out = policy.act(PolicyInputs.from_stack(ablate(stack, options.ablate), task=task), samples=options.samples,
                             steps=options.steps, noise_scale=options.noise_scale, seed=tick_seed(options.seed, stack.t0_ns))
        except (ValueError, RuntimeError) as exc:  # bad input or NaN output: counted, not fatal
            count_policy_error(result, exc, bag, stack.t0, logged)
            continue
        policy_ms = (time.perf_counter() - t_policy) * 1e3
        cut = int(getattr(out, "prompt_tokens_dropped", 0))
        if cut:
            result.warnings["instruction_truncated"] += 1
            if task not in logged:
                logged.add(task)
                _LOG.warning("%s: the instruction %r is %d token(s) over the model's budget and was cut off "
                             "(counted as instruction_truncated; logged once per instruction)", bag, task[:60], cut)
        timings = tick_timings(out, stack_ms, policy_ms)
        result.records.append(ArmTickRecord(
            bag=result.name, index=tick.index, tick_ns=tick.time_ns, t0_ns=stack.t0_ns, instruction=task,
            state=np.asarray(stack.joint_state.positions, dtype=np.float64),
            commanded=commanded, predicted=np.asarray(out.actions, dtype=np.float64), timings_ms=timings,
            truncated_tokens=cut))
    result.sensing = pipeline.stats()
    result.wall_s = time.perf_counter() - start
    return result


def merge_arm_parts(parts: Sequence[ArmBagEvaluation]) -> ArmBagEvaluation:
    """One bag's evaluation from those of consecutive tick ranges of it (records concatenated,
    counts summed), as `evaluator.merge_parts` does for vehicles."""
    import dataclasses

    merged = dataclasses.replace(parts[0], records=[r for p in parts for r in p.records], skipped=Counter(), warnings=Counter(),
                                 sensing=_sum_counts([p.sensing for p in parts]))
    for p in parts:
        merged.skipped.update(p.skipped)
        merged.warnings.update(p.warnings)
    merged.ticks_total = sum(p.ticks_total for p in parts)
    merged.wall_s = max(p.wall_s for p in parts)
    merged.error = next((p.error for p in parts if p.error), None)
    return merged
