"""Deterministic replay of a bag through the sensing pipeline at fixed ticks of sim time.

Sim time is the bag's receive time: at tick T every message received at or before T has been
handed to the pipeline, then a stack is assembled. Staleness is judged against the newest header
stamp received so far (not T): receive times and header stamps may run on different clocks, and
a looped bag restarts its stamps while its receive time goes on. The result depends only on the bag and
the config, never on how fast the machine is.

A replay may cover only the ticks [first, stop) of a bag (a worker's share of a long bag): it then
feeds the pipeline every message from the start of the bag (cheap: nothing is decoded before an
assembly), assembles the WARMUP_S of ticks before `first` without yielding them (which sets "the
previous stack") and zeroes the pipeline's counters, so the stacks it yields and the counts it
keeps are those of a replay from the start.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_ros.replay.bag_io import bag_info, read_messages
from vla_ros.sensors.frame_stack import FrameStack, StackSkip
from vla_ros.sensors.pipeline import SensingPipeline

_LOG = logging.getLogger("vla_ros.replay")


@dataclass(frozen=True)
class Tick:
    index: int
    time_ns: int
    result: FrameStack | StackSkip


def tick_times(start_ns: int, end_ns: int, rate_hz: float) -> list[int]:
    """Tick instants start + k / rate up to and including end."""
    period = 1e9 / rate_hz
    n = int((end_ns - start_ns) // period) + 1
    return [start_ns + round(k * period) for k in range(n)]


WARMUP_S = 1.0  # ticks assembled before a part-way replay's first tick (sets "the previous stack")


def replay_ticks(bag: str | Path, pipeline: SensingPipeline, rate_hz: float, first: int = 0, stop: int | None = None) -> Iterator[Tick]:
    """Feed the bag's messages on the pipeline's topics into it and assemble at each tick of
    [first, stop) (default: every tick)."""
    info = bag_info(bag)
    times = tick_times(info.start_ns, info.end_ns, rate_hz)
    stop = len(times) if stop is None else min(stop, len(times))
    warm = max(0, first - int(math.ceil(WARMUP_S * rate_hz)))
    messages = read_messages(bag, pipeline.topics)
    pending = next(messages, None)
    for index in range(warm, stop):
        t = times[index]
        while pending is not None and pending.log_time_ns <= t:
            if pending.msg is None:
                pipeline.drops.drop("deserialize_error", pending.topic, "record could not be deserialized")
            else:
                pipeline.on_message(pending.topic, pending.msg)
            pending = next(messages, None)
        result = pipeline.assemble(pipeline.newest_stamp_ns)
        if index < first:
            if index == first - 1:
                pipeline.clear_counters()
            continue
        yield Tick(index, t, result)


def count_ticks(bag: str | Path, rate_hz: float) -> int:
    info = bag_info(bag)
    return len(tick_times(info.start_ns, info.end_ns, rate_hz))


def evaluated_stacks(bag: Path, pipeline: SensingPipeline, options: Any, result: Any, first: int, stop: int | None,
                     progress_position: int, progress_label: str) -> Iterator[tuple[Tick, FrameStack, float]]:
    """The ticks [first, stop) of a bag for an evaluation, with a progress bar: every tick is
    counted in `result.ticks_total`, a skipped stack in `result.skipped` by its key, a bag that
    breaks mid-way ends the loop with `result.error` set (what was evaluated is kept); yields
    (tick, stack, milliseconds it took to assemble) until `options.limit` ticks are evaluated
    (`result.ticks_evaluated`, which the caller advances)."""
    from tqdm import tqdm

    ticks = replay_ticks(bag, pipeline, options.rate_hz, first, stop)
    total = count_ticks(bag, options.rate_hz)
    bar = tqdm(total=min(total, stop if stop is not None else total) - first, desc=(result.name[:24] + progress_label),
               unit="tick", position=progress_position, leave=True, disable=not options.progress, dynamic_ncols=True)
    try:
        while options.limit is None or result.ticks_evaluated < options.limit:
            t_stack = time.perf_counter()
            try:
                tick = next(ticks, None)
            except Exception as exc:  # noqa: BLE001 - a bag that breaks mid-way keeps what was evaluated
                result.error = f"bag became unreadable after {result.ticks_total} ticks: {exc}"
                _LOG.warning("%s: %s", bag, result.error)
                return
            if tick is None:
                return
            stack_ms = (time.perf_counter() - t_stack) * 1e3
            result.ticks_total += 1
            bar.update(1)
            if isinstance(tick.result, StackSkip):
                result.skipped[tick.result.key] += 1
                continue
            yield tick, tick.result, stack_ms
            bar.set_postfix(evaluated=result.ticks_evaluated, refresh=False)
    finally:
        bar.close()
        ticks.close()
