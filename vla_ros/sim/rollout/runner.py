"""Running a rollout: one job per episode (its world seed), each running the expert (the
reference), constant velocity and the model in the same world and scoring all three; jobs run
in this process or in worker processes that each load their own policy (`spawn`: a fresh
interpreter, cores // workers torch threads each). A progress bar counts simulated seconds of
the model episodes, fed by the workers through a queue.
"""
from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_ros.config import Config
from vla_ros.sim.rollout.episode import EpisodeSpec, run_episode
from vla_ros.sim.rollout.log import METHODS, EpisodeLog
from vla_ros.sim.rollout.scoring import score_episode
from vla_ros.sim.world import STEP_NS


@dataclass
class EpisodeResult:
    spec: EpisodeSpec
    scores: dict[str, dict[str, Any]]  # method -> metrics
    logs: dict[str, EpisodeLog]  # method -> log without traffic (for the plots)


def run_job(spec: EpisodeSpec, config: Config, policy: Any, model_name: str, out: Path | None, threads: int,
            progress: Callable[[int], None] | None = None, transport: str = "lockstep") -> EpisodeResult:
    expert = run_episode(spec, "expert", config)
    logs = {"expert": expert, "constant_velocity": run_episode(spec, "constant_velocity", config)}
    ep_dir = None if out is None else out / "episodes" / spec.name
    logs["model"] = run_episode(spec, "model", config, policy=policy, model_name=model_name, out_dir=ep_dir, reference=expert,
                                progress=progress, decode_threads=threads, transport=transport)
    if ep_dir is not None:  # files relative to --out
        logs["model"].files = {k: f"episodes/{v}" for k, v in logs["model"].files.items()}
    scores = {m: score_episode(logs[m], expert) for m in METHODS}
    for log in logs.values():
        log.traffic = []  # not needed any more; keeps what goes back to the parent small
    return EpisodeResult(spec, scores, logs)


# ------------------------------------------------------------------------------ workers

_WORKER: dict[str, Any] = {}


def _init_worker(model_spec: Any, config: Config, out: Path | None, threads: int, progress_queue: Any) -> None:
    import torch

    from vla_ros.replay.eval_runner import ModelSpecError, load_policy

    torch.set_num_threads(threads)
    _WORKER.update(config=config, out=out, threads=threads, queue=progress_queue, name=model_spec.path)
    try:
        _WORKER["policy"] = load_policy(model_spec)
    except ModelSpecError as exc:  # raised from the first job instead (a failing initializer respawns forever)
        _WORKER["error"] = str(exc)


def _worker_job(spec: EpisodeSpec) -> EpisodeResult:
    from vla_ros.replay.eval_runner import ModelSpecError

    if "error" in _WORKER:
        raise ModelSpecError(_WORKER["error"])
    q = _WORKER["queue"]
    return run_job(spec, _WORKER["config"], _WORKER["policy"], _WORKER["name"], _WORKER["out"], _WORKER["threads"],
                   progress=lambda steps: q.put(steps))


def run_all(specs: list[EpisodeSpec], config: Config, model_spec: Any, out: Path | None, workers: int, threads: int,
            policy: Any = None, show_progress: bool = True, on_done: Callable[[EpisodeResult], None] | None = None,
            transport: str = "lockstep") -> list[EpisodeResult]:
    """Every episode, results in episode order. `transport` "dds" runs one episode at a time here,
    each with its own node process (two nodes on one DDS domain would hear each other)."""
    from tqdm import tqdm

    total_s = sum((s.steps - 1) * STEP_NS / 1e9 for s in specs)
    bar = tqdm(total=round(total_s, 1), desc=f"rollout {len(specs)} episode(s)", unit="sim s", disable=not show_progress,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} sim s [{elapsed}<{remaining}]")
    step_s = STEP_NS / 1e9
    results: list[EpisodeResult] = []
    try:
        if workers <= 1 or transport == "dds":
            if policy is None and transport != "dds":
                from vla_ros.replay.eval_runner import load_policy

                policy = load_policy(model_spec)
            for spec in specs:
                r = run_job(spec, config, policy, model_spec.path, out, threads, progress=lambda n: bar.update(n * step_s),
                            transport=transport)
                results.append(r)
                if on_done:
                    on_done(r)
            return results
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        with ctx.Pool(workers, initializer=_init_worker, initargs=(model_spec, config, out, threads, q)) as pool:
            pending = [pool.apply_async(_worker_job, (spec,)) for spec in specs]
            for job in pending:
                while True:
                    _drain(q, bar, step_s)
                    try:
                        r = job.get(timeout=0.2)
                        break
                    except multiprocessing.TimeoutError:
                        continue
                results.append(r)
                if on_done:
                    on_done(r)
            _drain(q, bar, step_s)
            pool.close()
            pool.join()
        return results
    finally:
        bar.close()


def _drain(q: Any, bar: Any, step_s: float) -> None:
    while True:
        try:
            bar.update(q.get_nowait() * step_s)
        except queue.Empty:
            return


def episode_specs(episodes: int, seed: int, scenario: str, duration_s: float) -> list[EpisodeSpec]:
    """Episode i drives the world of seed `seed + i`."""
    return [EpisodeSpec(i, seed + i, scenario, duration_s) for i in range(episodes)]

