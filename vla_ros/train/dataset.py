"""Bags -> training examples, through the same SensingPipeline and tick replay the evaluator and
the node use (so train and run-time inputs cannot drift), cached on disk once per bag.

An example is one tick with a complete FrameStack, a complete recorded future (64 x 0.1 s, in
the t0 ego frame, from `OdometryTrack` exactly as `vla-ros eval` takes it) and a reasoning label
from `/sim/ground_truth` at t0. Ticks without a stack, a future or a label are skipped and
counted by reason. Each camera frame is stored once per bag (a tick reuses 3 of its 4 frames of
the previous tick); ticks index into the frame table.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vla_ros.config import Config
from vla_ros.model.action_space import ActionStats, UnicycleAccelCurvature
from vla_ros.replay.bag_io import read_messages
from vla_ros.replay.ground_truth import FutureUnavailable, OdometryTrack
from vla_ros.replay.tick_replay import replay_ticks
from vla_ros.sensors.frame_stack import StackSkip
from vla_ros.sensors.pipeline import SensingPipeline
from vla_ros.sensors.stamps import to_ns
from vla_ros.train.actions import invert_path, roundtrip_error

_LOG = logging.getLogger("vla_ros.train")
GROUND_TRUTH_TOPIC = "/sim/ground_truth"
LABEL_TOLERANCE_NS = 50_000_000  # labels come at 10 Hz on the camera instants
CACHE_VERSION = 2


class EmptyTrainingSetError(ValueError):
    """No bag gave a single usable tick."""


@dataclass
class BagExamples:
    """The examples of one bag. V cameras, F frames, T waypoints, N history steps.

    frames uint8 (M, H, W, 3); frame_index int32 (K, V, F) into frames; hist_xyz (K, N, 3);
    hist_rot (K, N, 3, 3); fut_xyz (K, T, 3); actions float32 (K, T, 2) physical (a, kappa);
    reasoning / maneuver: K strings; t0_ns int64 (K,); skipped: reason -> count;
    roundtrip_m (K,): mean distance between the integrated target actions and the recorded path.
    """

    name: str
    frames: np.ndarray
    frame_index: np.ndarray
    hist_xyz: np.ndarray
    hist_rot: np.ndarray
    fut_xyz: np.ndarray
    actions: np.ndarray
    roundtrip_m: np.ndarray
    reasoning: list[str]
    maneuver: list[str]
    t0_ns: np.ndarray
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.frame_index.shape[0])


def read_labels(bag: str | Path) -> dict[int, dict]:
    """stamp_ns -> ground-truth record, from the bag's /sim/ground_truth (empty if absent)."""
    out: dict[int, dict] = {}
    for m in read_messages(bag, [GROUND_TRUTH_TOPIC]):
        try:
            rec = json.loads(m.msg.data)
            out[int(rec["stamp_ns"])] = rec
        except (AttributeError, ValueError, KeyError, TypeError):
            continue  # a broken label only costs its tick (counted as no_label)
    return out


def _label_at(labels: dict[int, dict], stamps: np.ndarray, t0_ns: int) -> dict | None:
    if not len(stamps):
        return None
    i = int(np.searchsorted(stamps, t0_ns))
    best = min((j for j in (i - 1, i) if 0 <= j < len(stamps)), key=lambda j: abs(int(stamps[j]) - t0_ns))
    if abs(int(stamps[best]) - t0_ns) > LABEL_TOLERANCE_NS:
        return None
    rec = labels[int(stamps[best])]
    return rec if isinstance(rec.get("reasoning"), str) and isinstance(rec.get("maneuver"), str) else None


def extract_bag(bag: str | Path, config: Config, image_hw: tuple[int, int], space: UnicycleAccelCurvature,
                rate_hz: float = 10.0) -> BagExamples:
    """Replay one bag and build its examples (the action targets are solved here, once)."""
    bag = Path(bag)
    pipeline = SensingPipeline(config, image_size_hw=image_hw, decode_threads=1)  # bags are built in parallel jobs
    track = OdometryTrack.from_bag(bag, config.ego.odometry_topic, to_ns(config.ego.max_gap_s), to_ns(config.sensing.time_jump_s))
    labels = read_labels(bag)
    label_stamps = np.array(sorted(labels), dtype=np.int64)
    T, dt = space.cfg.num_waypoints, space.cfg.dt
    skipped: Counter[str] = Counter()
    frame_ids: dict[tuple[int, int], int] = {}
    frames: list[np.ndarray] = []
    rows: dict[str, list] = {k: [] for k in ("index", "hx", "hr", "fx", "fr", "text", "man", "t0")}
    for tick in replay_ticks(bag, pipeline, rate_hz):
        stack = tick.result
        if isinstance(stack, StackSkip):
            skipped[f"stack/{stack.key}"] += 1
            continue
        hist = stack.history
        try:
            fut = track.future(tick.time_ns, stack.t0_ns, hist.pose_t0_xyz, hist.pose_t0_rot, T, dt)
        except FutureUnavailable as exc:
            skipped[exc.key] += 1
            continue
        label = _label_at(labels, label_stamps, stack.t0_ns)
        if label is None:
            skipped["no_label"] += 1
            continue
        V, F = stack.stamps_ns.shape
        idx = np.empty((V, F), dtype=np.int32)
        for v in range(V):
            for f in range(F):
                key = (v, int(stack.stamps_ns[v, f]))
                if key not in frame_ids:
                    frame_ids[key] = len(frames)
                    frames.append(stack.images[v, f])
                idx[v, f] = frame_ids[key]
        rows["index"].append(idx)
        rows["hx"].append(hist.xyz)
        rows["hr"].append(hist.rot)
        rows["fx"].append(fut.xyz)
        rows["fr"].append(fut.rot)
        rows["text"].append(label["reasoning"])
        rows["man"].append(label["maneuver"])
        rows["t0"].append(stack.t0_ns)
    k = len(rows["index"])
    h, w = image_hw
    n = config.ego.history_steps
    hx = np.asarray(rows["hx"], dtype=np.float64).reshape(k, n, 3)
    hr = np.asarray(rows["hr"], dtype=np.float64).reshape(k, n, 3, 3)
    fx = np.asarray(rows["fx"], dtype=np.float64).reshape(k, T, 3)
    fr = np.asarray(rows["fr"], dtype=np.float64).reshape(k, T, 3, 3)
    if k:
        tx, tr, th, thr = (torch.from_numpy(a) for a in (fx, fr, hx, hr))
        acts = invert_path(space, tx, tr, th, thr)
        rt = roundtrip_error(space, acts, tx, th, thr).numpy()
        acts = acts.float().numpy()
    else:
        acts, rt = np.zeros((0, T, 2), np.float32), np.zeros(0)
    return BagExamples(
        name=bag.name, frames=np.asarray(frames, dtype=np.uint8).reshape(-1, h, w, 3),
        frame_index=np.asarray(rows["index"], dtype=np.int32).reshape(k, len(config.cameras), config.frames.count),
        hist_xyz=hx, hist_rot=hr, fut_xyz=fx, actions=acts, roundtrip_m=rt, reasoning=rows["text"],
        maneuver=rows["man"], t0_ns=np.asarray(rows["t0"], dtype=np.int64), skipped=dict(skipped))


def cache_key(bag: Path, config: Config, image_hw: tuple[int, int], space: UnicycleAccelCurvature, rate_hz: float) -> str:
    """Changes whenever the bag's files, the sensing config, the image size or the action space do."""
    files = sorted(p for p in ([bag] if bag.is_file() else bag.rglob("*")) if p.is_file())
    parts = [str(CACHE_VERSION), str(bag.resolve()), json.dumps(config.to_dict(), sort_keys=True, default=str),
             str(image_hw), repr(space.cfg), str(rate_hz)]
    parts += [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _save(path: Path, ex: BagExamples) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, frames=ex.frames, frame_index=ex.frame_index, hist_xyz=ex.hist_xyz, hist_rot=ex.hist_rot,
             fut_xyz=ex.fut_xyz, actions=ex.actions, roundtrip_m=ex.roundtrip_m, t0_ns=ex.t0_ns,
             reasoning=np.asarray(ex.reasoning, dtype=str), maneuver=np.asarray(ex.maneuver, dtype=str),
             meta=np.asarray(json.dumps({"name": ex.name, "skipped": ex.skipped})))
    tmp.replace(path)  # never a half-written cache entry


def _load(path: Path) -> BagExamples:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        return BagExamples(name=meta["name"], frames=z["frames"], frame_index=z["frame_index"], hist_xyz=z["hist_xyz"],
                           hist_rot=z["hist_rot"], fut_xyz=z["fut_xyz"], actions=z["actions"], roundtrip_m=z["roundtrip_m"],
                           reasoning=[str(s) for s in z["reasoning"]], maneuver=[str(s) for s in z["maneuver"]],
                           t0_ns=z["t0_ns"], skipped=meta["skipped"])


def load_bag(bag: str | Path, config: Config, image_hw: tuple[int, int], space: UnicycleAccelCurvature,
             cache_dir: Path | None, rate_hz: float = 10.0) -> BagExamples:
    bag = Path(bag)
    if cache_dir is None:
        return extract_bag(bag, config, image_hw, space, rate_hz)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{bag.name}-{cache_key(bag, config, image_hw, space, rate_hz)}.npz"
    if path.is_file():
        return _load(path)
    ex = extract_bag(bag, config, image_hw, space, rate_hz)
    _save(path, ex)
    return ex


class TrainSet:
    """All examples of several bags, frames concatenated; `batch(indices)` gathers tensors."""

    def __init__(self, bags: list[BagExamples]) -> None:
        self.bags = bags
        offsets = np.cumsum([0] + [len(b.frames) for b in bags])
        self.frames = np.concatenate([b.frames for b in bags]) if bags else np.zeros((0, 1, 1, 3), np.uint8)
        self.frame_index = np.concatenate([b.frame_index + off for b, off in zip(bags, offsets)]) if bags else np.zeros((0, 1, 1), np.int32)
        cat = lambda name: np.concatenate([getattr(b, name) for b in bags]) if bags else np.zeros((0,))  # noqa: E731
        self.hist_xyz, self.hist_rot, self.fut_xyz, self.actions = cat("hist_xyz"), cat("hist_rot"), cat("fut_xyz"), cat("actions")
        self.roundtrip_m = cat("roundtrip_m")
        self.reasoning = [s for b in bags for s in b.reasoning]
        self.maneuver = [s for b in bags for s in b.maneuver]

    def __len__(self) -> int:
        return int(self.frame_index.shape[0])

    @property
    def skipped(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for b in self.bags:
            total.update(b.skipped)
        return dict(sorted(total.items()))

    def action_stats(self) -> ActionStats:
        """Per-channel mean/std of the physical target actions (written to action_stats.json)."""
        a = self.actions.reshape(-1, 2).astype(np.float64)
        std = np.maximum(a.std(axis=0), 1e-6)
        return ActionStats(mean=(float(a[:, 0].mean()), float(a[:, 1].mean())), std=(float(std[0]), float(std[1])))

    def images(self, indices: np.ndarray) -> np.ndarray:
        """uint8 (B, V, F, H, W, 3)."""
        return self.frames[self.frame_index[indices]]


def _load_job(args: tuple) -> BagExamples:
    return load_bag(*args)


def _init_extraction_worker(threads: int) -> None:
    # Each worker's torch would otherwise start one OpenMP thread per core: 16 workers x 16
    # spinning threads on a 16-core GPU host made extraction crawl (minutes instead of seconds).
    torch.set_num_threads(threads)


def build_trainset(bags: list[Path], config: Config, image_hw: tuple[int, int], space: UnicycleAccelCurvature,
                   cache_dir: Path | None, rate_hz: float = 10.0, log=print, workers: int = 1) -> TrainSet:
    """Load (or extract and cache) every bag, `workers` bags at a time in separate processes.
    Raises EmptyTrainingSetError if nothing is usable."""
    jobs = [(bag, config, image_hw, space, cache_dir, rate_hz) for bag in bags]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing

        from vla_ros.replay.eval_runner import threads_per_worker

        n = min(workers, len(jobs))
        with multiprocessing.get_context("spawn").Pool(n, initializer=_init_extraction_worker,
                                                       initargs=(threads_per_worker(n),)) as pool:
            results = pool.map(_load_job, jobs, chunksize=1)
    else:
        results = [_load_job(j) for j in jobs]
    loaded = []
    for ex in results:
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(ex.skipped.items())) or "none"
        log(f"[train] {ex.name}: {len(ex)} examples, skipped: {skipped}")
        loaded.append(ex)
    ts = TrainSet([b for b in loaded if len(b)])
    ts.bags = loaded  # skip counts of empty bags still count
    if len(ts) == 0:
        raise EmptyTrainingSetError(
            f"no usable training ticks in {len(bags)} bag(s) (skipped: {ts.skipped or 'nothing read'}); a tick needs "
            f"every camera on {', '.join(c.topic for c in config.cameras)}, odometry on {config.ego.odometry_topic} covering "
            f"the 6.4 s future, and a reasoning label on {GROUND_TRUTH_TOPIC}")
    return ts
