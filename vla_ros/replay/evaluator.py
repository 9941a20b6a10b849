"""Open-loop evaluation of one bag: replay it through the sensing pipeline in sim time, run the
policy at every tick that has a complete stack and a complete recorded future, and compare the
prediction (and two kinematic baselines) with what the car really did.

Deterministic: the ticks, stacks and ground truth depend only on the bag and the config; the
policy's noise at a tick is drawn from a generator seeded by (seed, t0), so a result does not
depend on --limit, on the other bags or on which worker ran the bag.
"""
from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla_ros.config import CameraConfig, Config
from vla_ros.replay.bag_io import bag_info
from vla_ros.replay.baselines import baseline_predictions
from vla_ros.replay.camera_model import CameraModel, load_camera_model
from vla_ros.replay.gallery import attach_front_images
from vla_ros.replay.ground_truth import FutureUnavailable, OdometryTrack
from vla_ros.replay.instruction_track import InstructionTrack
from vla_ros.replay.labels import GROUND_TRUTH_TOPIC, read_maneuver_labels
from vla_ros.replay.metrics import trajectory_errors
from vla_ros.replay.prediction_bag import write_prediction_bag
from vla_ros.replay.tick_record import MODEL, TickRecord
from vla_ros.replay.tick_replay import evaluated_stacks
from vla_ros.runtime.inputs import PolicyInputs, RouteRefusedError
from vla_ros.runtime.tick_seed import tick_seed
from vla_ros.sensors.drops import DropCounter
from vla_ros.sensors.frame_stack import FrameStack
from vla_ros.sensors.instruction import navigation_rule
from vla_ros.sensors.pipeline import SensingPipeline
from vla_ros.sensors.stamps import to_ns

_LOG = logging.getLogger("vla_ros.replay")

ABLATIONS = ("cameras",)
ABLATION_GREY = 128


@dataclass(frozen=True)
class EvalOptions:
    rate_hz: float
    steps: int
    samples: int
    seed: int
    reasoning: bool
    max_reasoning_tokens: int
    ablate: tuple[str, ...] = ()
    limit: int | None = None  # evaluated ticks per bag
    front_camera: str | None = None
    progress: bool = True
    gallery_keep: int = 4  # per bag: worst and most typical ticks whose camera image is kept
    noise_scale: float = 0.0  # flow-matching start noise scale, as inference.noise_scale (vla_ros/runtime/start_noise.py)
    decode_threads: int = 1  # sensing decode threads per worker (its share of the cores)

    @classmethod
    def from_command_line(cls, args: Any, inf: Any, reasoning: bool, front_camera: str | None = None) -> "EvalOptions":
        """`vla-ros eval`'s flags, each unset one from the config's inference section `inf`."""
        return cls(
            rate_hz=args.rate if args.rate is not None else inf.rate_hz,
            steps=args.steps if args.steps is not None else inf.steps,
            samples=args.samples if args.samples is not None else inf.samples,
            seed=args.seed if args.seed is not None else inf.seed,
            reasoning=reasoning,
            max_reasoning_tokens=inf.max_reasoning_tokens,
            ablate=tuple(sorted(set(args.ablate))),
            limit=args.limit,
            front_camera=front_camera,
            noise_scale=args.noise_scale if args.noise_scale is not None else inf.noise_scale,
            progress=not args.no_progress and sys.stderr.isatty(),  # bars in a log file are noise
        )


@dataclass
class BagEvaluation:
    name: str
    path: str
    dt_s: float
    samples: int
    waypoints: int
    ticks_total: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    records: list[TickRecord] = field(default_factory=list)
    missing_topics: list[str] = field(default_factory=list)
    sensing: dict[str, Any] = field(default_factory=dict)
    odometry: dict[str, int] = field(default_factory=dict)
    navigation: dict[str, Any] = field(default_factory=dict)  # the navigation track's counts (navigation.topic set)
    camera: CameraModel | None = None
    front_camera: str | None = None
    error: str | None = None
    predictions_bag: str | None = None
    wall_s: float = 0.0
    model_info: dict[str, Any] = field(default_factory=dict)

    @property
    def ticks_evaluated(self) -> int:
        return len(self.records)


def model_info(policy: Any) -> dict[str, Any]:
    """Name and parameter count of the policy's network, for the report."""
    model = getattr(policy, "model", None)
    params = sum(p.numel() for p in model.parameters()) if model is not None else None
    return {"model_name": getattr(getattr(policy, "config", None), "name", None) or None, "model_parameters": params}


def pick_front_camera(config: Config, name: str | None) -> tuple[int, CameraConfig]:
    """The camera shown in the gallery: `name`, else front_wide, else the first 'front*', else the first."""
    cams = list(config.cameras)
    if name is not None:
        for i, c in enumerate(cams):
            if c.name == name:
                return i, c
        raise ValueError(f"--front-camera {name!r} is not a configured camera ({', '.join(config.camera_names)})")
    for pred in (lambda c: c.name == "front_wide", lambda c: "front" in c.name):
        for i, c in enumerate(cams):
            if pred(c):
                return i, c
    return 0, cams[0]


def ablate(stack: FrameStack, ablations: tuple[str, ...]) -> FrameStack:
    """`cameras`: every image replaced by flat grey (measures how much the policy uses vision)."""
    if "cameras" in ablations:
        stack = dataclasses.replace(stack, images=np.full_like(stack.images, ABLATION_GREY))
    return stack


def evaluate_bag(
    bag: str | Path,
    config: Config,
    policy: Any,
    options: EvalOptions,
    name: str | None = None,
    predictions_bag: str | Path | None = None,
    progress_position: int = 0,
) -> BagEvaluation:
    """Evaluate one whole bag with a loaded `Policy` and finish it (gallery images, output bag).
    Bad input never raises: it is counted in `skipped` (by reason) or, if the bag stops being
    readable, noted in `error`."""
    track = read_odometry(bag, config)  # read once for both the futures and the output bag
    result = evaluate_ticks(bag, config, policy, options, name=name, progress_position=progress_position, track=track)
    finish_bag(result, config, options, predictions_bag, track=track)
    return result


def read_odometry(bag: str | Path, config: Config) -> OdometryTrack:
    return OdometryTrack.from_bag(bag, config.ego.odometry_topic, to_ns(config.ego.max_gap_s), to_ns(config.sensing.time_jump_s))


def navigation_track(bag: Path, config: Config, drops: DropCounter, counts: dict[str, int],
                     result: BagEvaluation, first_part: bool) -> InstructionTrack | None:
    """The bag's navigation instructions under the node's rule (None: no navigation.topic); a
    configured topic the bag lacks is a missing topic. `first_part`: this part counts the drops
    of messages before its first tick (later parts of a split bag do not count them again)."""
    nav = config.navigation
    if not nav.topic:
        return None
    if not counts.get(nav.topic):
        result.missing_topics.append(nav.topic)
    return InstructionTrack(bag, nav.topic, drops, count_earlier=first_part, **navigation_rule(nav.max_age_s))


def count_policy_error(result: Any, exc: Exception, bag: Path, t0_s: float, logged: set[str]) -> None:
    """A tick the policy failed on (bad input, NaN output): counted by exception type in
    `result.skipped`, the first of each kind logged."""
    key = f"policy_error/{type(exc).__name__}"
    result.skipped[key] += 1
    if key not in logged:
        logged.add(key)
        _LOG.warning("%s: policy failed at t0=%.3f (%s); further failures of this kind are only counted", bag, t0_s, exc)


def tick_timings(out: Any, stack_ms: float, policy_ms: float) -> dict[str, float]:
    """A tick's milliseconds by stage: the policy's own (vision, prefill, denoise, ...), assembling
    the stack, the whole policy call and both together."""
    own = out.timings.as_dict()
    timings = {k[:-3]: v for k, v in own.items() if k.endswith("_ms") and k != "total_ms"}
    timings["stack"] = stack_ms
    timings["policy"] = float(own.get("total_ms", policy_ms))
    timings["total"] = stack_ms + policy_ms
    return timings


def evaluate_ticks(
    bag: str | Path,
    config: Config,
    policy: Any,
    options: EvalOptions,
    name: str | None = None,
    first: int = 0,
    stop: int | None = None,
    progress_position: int = 0,
    progress_label: str = "",
    track: OdometryTrack | None = None,
) -> BagEvaluation:
    """Evaluate the ticks [first, stop) of one bag (a worker's share; see `merge_parts`): the
    records and counts only, without gallery images or output bag (`finish_bag` adds them).
    `track`: the bag's odometry when the caller has read it already."""
    start = time.perf_counter()
    bag = Path(bag)
    T = int(policy.num_waypoints)
    dt = float(policy.config.action_space.dt)
    result = BagEvaluation(name or bag.stem, str(bag), dt, options.samples, T, model_info=model_info(policy))
    info = bag_info(bag)
    wanted = [c.topic for c in config.cameras] + [config.ego.odometry_topic]
    result.missing_topics = [t for t in wanted if info.message_counts.get(t, 0) == 0]
    front_index, front_cam = pick_front_camera(config, options.front_camera)
    result.front_camera = front_cam.name
    try:
        result.camera = load_camera_model(bag, info, front_cam, config.ego.child_frame_id)
    except Exception as exc:  # noqa: BLE001 - a broken calibration only costs the overlay
        _LOG.warning("%s: cannot read camera calibration (%s); no projected paths", bag, exc)
    track = track if track is not None else read_odometry(bag, config)
    labels = read_maneuver_labels(bag) if options.reasoning and info.message_counts.get(GROUND_TRUTH_TOPIC) else None
    result.odometry = {"messages": len(track.messages), "usable": len(track), "dropped": track.dropped, "segments": track.num_segments}

    size = None if config.image.override_model else getattr(policy, "image_size_hw", None)
    pipeline = SensingPipeline(config, image_size_hw=size, decode_threads=options.decode_threads)
    # The embedding cache is keyed by (camera, stamp): another bag may reuse the same stamps.
    if hasattr(policy, "vision_cache"):
        policy.vision_cache.clear()
    navigation = navigation_track(bag, config, pipeline.drops, info.message_counts, result, first_part=first == 0)
    camera_ids = tuple(c.camera_id for c in config.cameras) if getattr(policy, "needs_camera_ids", False) else None
    horizon_s = (np.arange(T) + 1) * dt
    logged_policy_errors: set[str] = set()
    for tick, stack, stack_ms in evaluated_stacks(bag, pipeline, options, result, first, stop, progress_position, progress_label):
        hist = stack.history
        try:
            future = track.future(tick.time_ns, stack.t0_ns, hist.pose_t0_xyz, hist.pose_t0_rot, T, dt)
        except FutureUnavailable as exc:
            result.skipped[exc.key] += 1
            continue
        route = navigation.at(tick.time_ns) if navigation is not None else None
        inputs = ablate(stack, options.ablate)
        if route or camera_ids:
            inputs = PolicyInputs.from_stack(inputs, task=route, camera_ids=camera_ids)
        t_policy = time.perf_counter()
        try:
            out = policy.act(
                inputs,
                reasoning=options.reasoning,
                max_reasoning_tokens=options.max_reasoning_tokens if options.reasoning else None,
                samples=options.samples,
                steps=options.steps,
                noise_scale=options.noise_scale,  # drawn in the policy, seeded by (seed, t0) as the node seeds it
                seed=tick_seed(options.seed, stack.t0_ns),
            )
        except (ValueError, RuntimeError) as exc:  # bad input or NaN output: counted, not fatal
            if route and isinstance(exc, RouteRefusedError):  # as the node: the next ticks drive without it
                navigation.reject(route, str(exc))
            count_policy_error(result, exc, bag, stack.t0, logged_policy_errors)
            continue
        timings = tick_timings(out, stack_ms, (time.perf_counter() - t_policy) * 1e3)
        baselines = baseline_predictions(hist, horizon_s)
        errors = {MODEL: trajectory_errors(out.xyz, future)}
        errors.update({k: trajectory_errors(v, future) for k, v in baselines.items()})
        result.records.append(
            TickRecord(
                bag=result.name,
                index=tick.index,
                tick_ns=tick.time_ns,
                t0_ns=stack.t0_ns,
                dt_s=float(out.dt),
                pose_t0_xyz=hist.pose_t0_xyz,
                pose_t0_rot=hist.pose_t0_rot,
                history_xyz=hist.xyz,
                future=future,
                pred_xyz=np.asarray(out.xyz, dtype=np.float64),
                pred_rot=None if out.rot is None else np.asarray(out.rot[:1], dtype=np.float64),
                baselines=baselines,
                errors=errors,
                timings_ms=timings,
                reasoning=out.reasoning,
                front_stamp_ns=int(stack.stamps_ns[front_index, -1]),
                label_maneuver=None if labels is None else labels.at(stack.t0_ns),
                navigation=route,
            )
        )
    result.sensing = pipeline.stats()
    if navigation is not None:
        result.navigation = navigation.stats()
    result.wall_s = time.perf_counter() - start
    return result


def finish_bag(result: BagEvaluation, config: Config, options: EvalOptions, predictions_bag: str | Path | None,
               track: OdometryTrack | None = None) -> None:
    """After all of a bag's ticks are in: the gallery ticks' front images at full size (the
    overall worst ticks are among the per-bag worst, so the report loses nothing) and the output
    bag."""
    bag = Path(result.path)
    _, front_cam = pick_front_camera(config, options.front_camera)
    try:
        attach_front_images(bag, front_cam.topic, result.records, options.gallery_keep)
    except Exception as exc:  # noqa: BLE001 - the gallery is not worth failing an evaluation for
        _LOG.warning("%s: no gallery images (%s)", bag, exc)
    if predictions_bag is not None:
        track = track if track is not None else read_odometry(bag, config)
        write_prediction_bag(
            predictions_bag,
            config.ego.odometry_topic,
            track.messages,
            result.records,
            config.outputs.frame_id,
            config.outputs.trajectory_topic,
            config.outputs.reasoning_topic,
        )
        result.predictions_bag = str(predictions_bag)


def merge_parts(parts: Sequence[BagEvaluation]) -> BagEvaluation:
    """The evaluation of a whole bag from those of consecutive tick ranges of it, in order:
    records concatenated, counts summed (each part counts only its own ticks and input)."""
    first = parts[0]
    merged = dataclasses.replace(first, records=[r for p in parts for r in p.records], skipped=Counter(),
                                 sensing=_sum_counts([p.sensing for p in parts]))
    for p in parts:
        merged.skipped.update(p.skipped)
    merged.ticks_total = sum(p.ticks_total for p in parts)
    if first.navigation:  # the track's counts are the bag's; the expired ticks each part's own
        merged.navigation = {**first.navigation, "expired_ticks": sum(p.navigation.get("expired_ticks", 0) for p in parts)}
    merged.wall_s = max(p.wall_s for p in parts)  # the parts run side by side
    merged.error = next((p.error for p in parts if p.error), None)
    return merged


def _sum_counts(dicts: Sequence[Any]) -> Any:
    """Numbers summed leaf by leaf across equally shaped nested dicts; other leaves from the first."""
    head = dicts[0]
    if isinstance(head, dict):
        keys = list(dict.fromkeys(k for d in dicts for k in d))
        return {k: _sum_counts([d[k] for d in dicts if k in d]) for k in keys}
    if isinstance(head, (int, float)) and not isinstance(head, bool):
        return sum(dicts)
    return head
