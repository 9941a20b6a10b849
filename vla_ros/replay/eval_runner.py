"""Running an evaluation over several bags: model checks before any work, one job per bag,
sequentially in this process or in worker processes that each load their own model. With more
workers than bags, each bag is cut into consecutive tick ranges (parts) that run side by side;
this process merges a bag's parts and finishes it (gallery images, output bag). The result is
the same as a sequential run (the noise is seeded per tick, the replay warms up before a part).

Workers are started with the `spawn` method (a fresh interpreter: no inherited torch threads or
CUDA state) and each gets cores // workers torch threads (unless told otherwise) so that W
workers do not oversubscribe the machine: OpenMP threads waiting for a busy core slow a small
model down many times over.
"""
from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_ros.config import Config, ConfigError
from vla_ros.cores import available_cores
from vla_ros.replay.evaluator import BagEvaluation, EvalOptions, evaluate_bag, evaluate_ticks, finish_bag, merge_parts
from vla_ros.ros.node_factory import check_prompt_inputs

_LOG = logging.getLogger("vla_ros.replay")


class ModelSpecError(ValueError):
    """The model cannot be used with this config (missing, corrupt, or shaped differently)."""


@dataclass(frozen=True)
class ModelSpec:
    path: str
    device: str
    dtype: str
    backend: str
    max_samples: int
    max_reasoning_tokens: int
    nav_guidance_weight: float | None = None  # navigation guidance (None: the checkpoint's setting)

    def load(self) -> Any:
        """The Policy (heavy imports here, so the CLI stays fast)."""
        from vla_ros.runtime.policy import Policy

        return Policy.from_pretrained(self.path, device=self.device, dtype=self.dtype, backend=self.backend,
                                      max_samples=self.max_samples, max_reasoning_tokens=self.max_reasoning_tokens,
                                      nav_guidance_weight=self.nav_guidance_weight)


@dataclass(frozen=True)
class BagJob:
    index: int
    bag: str
    name: str
    predictions_bag: str | None
    first: int = 0  # the ticks [first, stop) of the bag (a part); stop None: to the end
    stop: int | None = None
    part: int = 0
    parts: int = 1


MIN_PART_TICKS = 50  # a bag is not cut into parts shorter than this (each part warms up first)


def split_jobs(jobs: list[BagJob], workers: int, rate_hz: float, limit: int | None = None,
               min_ticks: int = MIN_PART_TICKS, head_ticks: int = 0, tail_ticks: int = 0) -> list[BagJob]:
    """With more workers than bags, cut each bag into up to ceil(workers / bags) parts, none
    shorter than `min_ticks`; otherwise (or with a per-bag tick `limit`) the jobs as they are.

    The cuts give every part the same number of ticks that can be evaluated: the first
    `head_ticks` (no full ego history yet) and the last `tail_ticks` (no full recorded future)
    are skipped cheaply, so cutting the whole range evenly left the last part idle for a tenth of
    the run while the first still ran the policy."""
    from vla_ros.replay.tick_replay import count_ticks

    if workers <= len(jobs) or limit is not None:
        return jobs
    per_bag = -(-workers // len(jobs))
    out: list[BagJob] = []
    for job in jobs:
        total = count_ticks(job.bag, rate_hz)
        n = max(1, min(per_bag, total // min_ticks))
        head = min(head_ticks, total)
        span = max(0, total - head - tail_ticks)
        if span >= n * min_ticks:
            edges = [0] + [head + round(i * span / n) for i in range(1, n)] + [total]
        else:  # a short bag, or one whose ticks are not one continuous drive (a loop): even ranges
            edges = [round(i * total / n) for i in range(n + 1)]
        out += [BagJob(job.index, job.bag, job.name, job.predictions_bag, edges[i], edges[i + 1] if i + 1 < n else None, i, n)
                for i in range(n)]
    return out


def unevaluable_ticks(config: Config, model_config: Any, rate_hz: float) -> tuple[int, int]:
    """(head, tail): ticks at the start of a bag without a full ego history and frame stack, and
    at its end without a full recorded future, for `split_jobs`."""
    import math

    history_s = max((config.ego.history_steps - 1) * config.ego.history_interval_s,
                    (config.frames.count - 1) * config.frames.interval_s)
    future_s = model_config.action_space.num_waypoints * model_config.action_space.dt
    return math.ceil(round(history_s * rate_hz, 6)), math.ceil(round(future_s * rate_hz, 6))  # 3*0.1*10 is 3.0000000000000004


def check_model(spec: ModelSpec, config: Config) -> Any:
    """Everything that can be checked without building the network: the preset name or the
    checkpoint directory and its config.json, the device, and that the model takes the stacks
    this config assembles. Returns the model's VLAConfig. Raises ModelSpecError."""
    from vla_ros.model.checkpoint import load_config
    from vla_ros.model.config import MAX_CAMERAS, ModelConfigError
    from vla_ros.model.presets import UnknownPresetError, is_preset, preset_config

    if spec.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ModelSpecError(f"device '{spec.device}' requested but CUDA is not available on this machine")
    if is_preset(spec.path):
        try:
            model_cfg = preset_config(spec.path)
        except UnknownPresetError as exc:
            raise ModelSpecError(str(exc)) from exc
    else:
        root = Path(spec.path)
        if not root.exists():
            raise ModelSpecError(
                f"model '{spec.path}' not found: no such checkpoint directory, and not a preset (presets look like 'random:tiny')")
        if not root.is_dir():
            raise ModelSpecError(f"model '{spec.path}' is a file; a checkpoint is a directory with config.json and model.safetensors")
        if not (root / "config.json").is_file():
            raise ModelSpecError(f"model '{spec.path}' has no config.json: not a vla_ros checkpoint directory")
        try:
            model_cfg = load_config(root)  # vla_ros's config.json or an Alpamayo-R1 release's
        except (ModelConfigError, ValueError, OSError) as exc:
            raise ModelSpecError(f"model '{spec.path}': {exc}") from exc
    prompt = model_cfg.prompt
    try:
        check_prompt_inputs(config, bool(getattr(prompt, "navigation", False)), bool(getattr(prompt, "needs_camera_ids", False)))
    except ConfigError as exc:
        raise ModelSpecError(f"model '{spec.path}' does not fit the config: {exc}") from exc
    problems = []
    if getattr(model_cfg.image, "variable_cameras", False):
        if len(config.cameras) > MAX_CAMERAS:
            problems.append(f"it takes at most {MAX_CAMERAS} cameras, the config lists {len(config.cameras)}")
    elif model_cfg.image.num_cameras != len(config.cameras):
        problems.append(f"it takes {model_cfg.image.num_cameras} cameras, the config lists {len(config.cameras)}")
    if model_cfg.image.num_frames != config.frames.count:
        problems.append(f"it takes {model_cfg.image.num_frames} frames per camera, the config has frames.count {config.frames.count}")
    if model_cfg.history.steps != config.ego.history_steps:
        problems.append(f"it takes {model_cfg.history.steps} history poses, the config has ego.history_steps {config.ego.history_steps}")
    if problems:
        raise ModelSpecError(f"model '{spec.path}' does not fit the config: " + "; ".join(problems))
    return model_cfg


def load_policy(spec: ModelSpec) -> Any:
    """Load the policy; every loading failure becomes a ModelSpecError naming the model."""
    try:
        return spec.load()
    except (ValueError, OSError, RuntimeError) as exc:  # CheckpointError, bad dtype/backend, torch errors
        raise ModelSpecError(f"cannot load model '{spec.path}': {exc}") from exc


def code_version() -> str:
    """`git describe` of the source tree this package runs from, else the package version."""
    from vla_ros import __version__

    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        try:
            done = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=root, capture_output=True, text=True, timeout=10)
            if done.returncode == 0 and done.stdout.strip():
                return f"git {done.stdout.strip()} (vla_ros {__version__})"
        except (OSError, subprocess.SubprocessError):
            pass
    return f"vla_ros {__version__}"


def device_description(device: str, threads: int | None = None) -> str:
    """For the report. Imports torch only where it must (a CUDA device, or no thread count given):
    the parent of eval's workers stays free of it."""
    if device.startswith("cuda") or threads is None:
        import torch

        version = torch.__version__
        cuda = device.startswith("cuda") and torch.cuda.is_available()
        name = torch.cuda.get_device_name(torch.device(device)) if cuda else cpu_name()
        threads = threads if threads is not None else torch.get_num_threads()
    else:
        from importlib.metadata import PackageNotFoundError, version as dist_version

        try:
            version = dist_version("torch")
        except PackageNotFoundError:
            version = "unknown"
        name = cpu_name()
    return f"{device} ({name}); torch {version}, {threads} CPU thread(s) per worker"


def cpu_name() -> str:
    """The CPU model and core count, e.g. 'Intel(R) Xeon(R) Processor x2' (reports, model cards)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" x{os.cpu_count()}"
    except OSError:
        pass
    return (platform.processor() or platform.machine()) + f" x{os.cpu_count()}"


# ------------------------------------------------------------------------------ workers

_WORKER: dict[str, Any] = {}


def _init_worker(spec: ModelSpec, config: Config, options: EvalOptions, workers: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER.update(config=config, options=options, workers=workers)
    # An exception escaping a pool initializer makes the pool respawn workers forever; keep it
    # and raise it from the first job instead, where imap hands it to the parent.
    try:
        _WORKER["policy"] = load_policy(spec)
    except ModelSpecError as exc:
        _WORKER["error"] = str(exc)


def _evaluate_ticks(config: Config) -> Callable[..., Any]:
    """The evaluation of a bag's ticks: a vehicle's trajectories, or an arm's chunks (control.mode chunk)."""
    if config.chunk_mode:
        from vla_ros.replay.arm_evaluator import evaluate_arm_ticks

        return evaluate_arm_ticks
    return evaluate_ticks


def _run_job(job: BagJob, position: int) -> BagEvaluation:
    if "error" in _WORKER:
        raise ModelSpecError(_WORKER["error"])
    label = f" {job.part + 1}/{job.parts}" if job.parts > 1 else ""
    return _evaluate_ticks(_WORKER["config"])(job.bag, _WORKER["config"], _WORKER["policy"], _WORKER["options"], name=job.name,
                                              first=job.first, stop=job.stop, progress_position=position, progress_label=label)


def _run_numbered(numbered: tuple[int, BagJob]) -> BagEvaluation:
    i, job = numbered
    return _run_job(job, i % _WORKER["workers"])


DEFAULT_MAX_WORKERS = 8  # each worker holds its own model: more by default could exhaust memory


def default_workers(device: str) -> int:
    """One worker per core on the CPU (at most DEFAULT_MAX_WORKERS); one on a GPU."""
    return 1 if device.startswith("cuda") else min(available_cores(), DEFAULT_MAX_WORKERS)


def threads_per_worker(workers: int) -> int:
    return max(1, available_cores() // max(workers, 1))


def check_bags(bags: list[str]) -> None:
    """Every bag must exist and open before any work starts (BagError naming the bag)."""
    from vla_ros.replay.bag_io import BagError, bag_info

    for bag in bags:
        if not Path(bag).exists():
            raise BagError(f"bag '{bag}' does not exist")
        bag_info(bag)


@dataclass
class RunPlan:
    """How an evaluation runs: its jobs (whole bags, or parts of bags with more workers than
    bags), the worker processes, torch threads per worker, the policy when it runs in this
    process (one worker), and the options with each worker's decode threads."""

    jobs: list[BagJob]
    workers: int
    threads: int
    policy: Any
    options: EvalOptions

    def run(self, config: Config, spec: ModelSpec, on_done: Callable[[Any], None] | None = None) -> tuple[list[Any], float]:
        """run_jobs with this process's torch threads set for the run and restored after (main()
        may run inside a larger program): the evaluations and the wall time in seconds."""
        previous = None
        if self.workers == 1:  # in this process; with workers it never imports torch (seconds of start-up)
            import torch

            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        start = time.perf_counter()
        try:
            evals = run_jobs(self.jobs, config, self.options, spec, self.workers, policy=self.policy, on_done=on_done,
                             threads=self.threads)
        finally:
            if previous is not None:
                torch.set_num_threads(previous)
        return evals, time.perf_counter() - start


def plan_run(jobs: list[BagJob], spec: ModelSpec, options: EvalOptions, head_ticks: int, tail_ticks: int,
             workers: int | None = None, threads: int | None = None) -> RunPlan:
    """Split the jobs for the workers wanted (default: `default_workers`), each part with the same
    share of evaluable ticks (`head_ticks` / `tail_ticks` at a bag's ends are not), and load the
    policy here when one worker runs them all. ModelSpecError when it cannot be loaded."""
    wanted = workers if workers is not None else default_workers(spec.device)
    jobs = split_jobs(jobs, wanted, options.rate_hz, options.limit, head_ticks=head_ticks, tail_ticks=tail_ticks)
    n = max(1, min(wanted, len(jobs)))
    policy = load_policy(spec) if n == 1 else None
    threads = threads or threads_per_worker(n)
    return RunPlan(jobs, n, threads, policy, dataclasses.replace(options, decode_threads=threads))


def run_jobs(
    jobs: list[BagJob],
    config: Config,
    options: EvalOptions,
    spec: ModelSpec,
    workers: int,
    policy: Any = None,
    on_done: Callable[[BagEvaluation], None] | None = None,
    threads: int | None = None,
) -> list[BagEvaluation]:
    """Evaluate every job (whole bags, or the parts of bags `split_jobs` made, in order); one
    result per bag, in job order. With workers == 1 the given (or a newly loaded) policy runs in
    this process; otherwise bags, or parts of them, run in worker processes."""
    results: list[BagEvaluation] = []
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        if any(job.parts > 1 for job in jobs):
            raise ValueError("parts of a bag need worker processes (workers > 1)")
        policy = policy if policy is not None else load_policy(spec)
        for job in jobs:
            if config.chunk_mode:
                r = _evaluate_ticks(config)(job.bag, config, policy, options, name=job.name, progress_position=0)
            else:
                r = evaluate_bag(job.bag, config, policy, options, name=job.name, predictions_bag=job.predictions_bag, progress_position=0)
            results.append(r)
            if on_done:
                on_done(r)
        return results
    ctx = multiprocessing.get_context("spawn")
    pending: list[BagEvaluation] = []
    with ctx.Pool(workers, initializer=_init_worker, initargs=(spec, config, options, workers, threads or threads_per_worker(workers))) as pool:
        for job, r in zip(jobs, pool.imap(_run_numbered, list(enumerate(jobs)))):  # imap keeps job order
            pending.append(r)
            if job.part + 1 < job.parts:
                continue
            pending, parts = [], pending
            if config.chunk_mode:  # an arm's evaluation has no gallery or output bag to finish
                from vla_ros.replay.arm_evaluator import merge_arm_parts

                whole = merge_arm_parts(parts)
            else:
                whole = merge_parts(parts)
                finish_bag(whole, config, options, job.predictions_bag)
            results.append(whole)
            if on_done:
                on_done(whole)
        pool.close()  # let the workers exit on their own: terminate() (the with-exit) leaks their semaphores
        pool.join()
    return results
