"""The training loop: data -> model -> (flow-matching + language-model) losses -> checkpoints.

Reproducible with a seed: model initialization, batch order, flow times, noise and the
reasoning drop-out all come from generators seeded by it, and their states are checkpointed, so
a resumed run continues exactly where the interrupted one stopped.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vla_ros.config import Config
from vla_ros.model.build import build_model
from vla_ros.model.checkpoint import save_checkpoint
from vla_ros.model.families.kv_expert import KVExpertVLA
from vla_ros.model.prompt import PromptBuilder
from vla_ros.model.text_tokenizer import TextTokenizer
from vla_ros.train.architecture import drive_tiny_config
from vla_ros.train.bpe import train_bpe
from vla_ros.train.dataset import TrainSet, build_trainset
from vla_ros.train.forward import Losses, make_batch, sample_flow_time, training_losses
from vla_ros.train.model_card import write_model_card
from vla_ros.train.state import has_state, load_state, save_state
from vla_ros.model.config import PromptConfig


@dataclass
class TrainOptions:
    bags: list[str]
    out: str
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100
    seed: int = 0
    device: str = "cpu"
    lm_weight: float = 0.5  # the LM loss next to the flow loss
    reasoning_keep: float = 0.5  # share of samples whose action tokens see the reasoning
    val_bags: list[str] = field(default_factory=list)
    val_every: int = 250
    save_every: int = 200
    log_every: int = 10
    work_dir: str = ""  # training state; default <out>.train
    cache_dir: str = ""  # per-bag example cache; default <work_dir>/cache
    resume: bool = False
    model_overrides: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    command: str = ""
    progress: bool = True
    workers: int = 2  # processes extracting bags into the cache
    time_budget_s: float = 0.0  # >0: the step count is fitted to this much training time (see fitted_steps)
    balance: float = 0.0  # sampling weight of an example ~ count(its maneuver)^-balance (0: uniform, 1: classes equal)


def setup_model(config_overrides: dict[str, Any], name: str, stats, seed: int, device: str) -> tuple[KVExpertVLA, TextTokenizer]:
    tokenizer = train_bpe(PromptConfig(), 1000)
    config = drive_tiny_config(tokenizer, name=name, overrides=config_overrides)
    if config.history.bins != 1000:  # the tokenizer's trajectory tokens follow the history bins
        tokenizer = train_bpe(config.prompt, config.history.bins)
        config = drive_tiny_config(tokenizer, name=name, overrides=config_overrides)
    return build_model(config, stats, device=device, seed=seed).train(), tokenizer


def sampling_weights(maneuvers: list[str], balance: float) -> np.ndarray | None:
    """Probabilities that draw rare maneuvers (follow, stop) more often than their share of the
    drive, so the reasoning learns them; None (uniform) when balance is 0."""
    if balance <= 0.0:
        return None
    names, inverse, counts = np.unique(np.asarray(maneuvers), return_inverse=True, return_counts=True)
    w = counts[inverse].astype(np.float64) ** -balance
    return w / w.sum()


BUDGET_FIT_STEP = 50  # the step at which the count is fitted to --time-budget (inside the 100-step warm-up)
BUDGET_SKIP_STEPS = 10  # first steps of a run left out of the pace (CUDA start-up, allocator warm-up)


def fitted_steps(requested: int, done: int, per_step_s: float, remaining_s: float) -> int:
    """The step count that uses up `remaining_s` more seconds at `per_step_s` after `done` steps
    (never more than requested, never fewer than done)."""
    return max(done, min(requested, done + int(remaining_s / max(per_step_s, 1e-9))))


def device_name(device: str) -> str:
    """What the card says the model was trained on."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(torch.device(device))} (CUDA)"
    from vla_ros.replay.eval_runner import cpu_name

    return f"CPU ({cpu_name()}, {torch.get_num_threads()} threads)"


def lr_at(step: int, opts: TrainOptions) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak."""
    if step < opts.warmup:
        return opts.lr * (step + 1) / opts.warmup
    frac = (step - opts.warmup) / max(1, opts.steps - opts.warmup)
    return opts.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


class Trainer:
    def __init__(self, opts: TrainOptions, sensing: Config, log: Callable[[str], None] = print) -> None:
        self.opts, self.sensing, self.log = opts, sensing, log
        self.out = Path(opts.out)
        self.work = Path(opts.work_dir) if opts.work_dir else self.out.with_name(self.out.name + ".train")
        self.cache = Path(opts.cache_dir) if opts.cache_dir else self.work / "cache"
        torch.manual_seed(opts.seed)
        if opts.device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls: ~1e-3 relative, well under the gradient noise
            torch.backends.cudnn.allow_tf32 = True
        # Built once with default stats to learn the image size and action space, then rebuilt with the data's stats.
        probe, self.tokenizer = setup_model(opts.model_overrides, opts.name or self.out.name, None, opts.seed, "cpu")
        hw = probe.image_preprocessor.model_input_hw
        t0 = time.perf_counter()
        self.data = build_trainset([Path(b) for b in opts.bags], sensing, hw, probe.action_space, self.cache, log=log, workers=opts.workers)
        self.val = build_trainset([Path(b) for b in opts.val_bags], sensing, hw, probe.action_space, self.cache, log=log, workers=opts.workers) if opts.val_bags else None
        self.data_s = time.perf_counter() - t0
        rt = self.data.roundtrip_m
        log(f"[train] {len(self.data)} examples from {len(opts.bags)} bag(s) in {self.data_s:.0f} s; action round trip "
            f"mean {rt.mean():.3f} m, max {rt.max():.3f} m")
        self.stats = self.data.action_stats()
        self.weights = sampling_weights(self.data.maneuver, opts.balance)
        self.model, _ = setup_model(opts.model_overrides, opts.name or self.out.name, self.stats, opts.seed, opts.device)
        self.prompts = PromptBuilder(self.tokenizer)
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2]
        rest = [p for n, p in self.model.named_parameters() if p.ndim < 2]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": opts.weight_decay},
                                            {"params": rest, "weight_decay": 0.0}], lr=opts.lr)
        self.gen = torch.Generator().manual_seed(opts.seed)
        self.rng = np.random.default_rng(opts.seed)
        self.step = 0
        self.train_s = 0.0
        self.history: list[dict[str, float]] = []
        if opts.resume and has_state(self.work):
            meta = load_state(self.work, self.model, self.optimizer, self.gen, self.rng)
            self.step, self.train_s, self.history = int(meta["step"]), float(meta.get("train_s", 0.0)), meta.get("history", [])
            saved = meta.get("options", {})
            if saved.get("time_budget_s") and self.step >= BUDGET_FIT_STEP:  # fitted before the interruption: keep it
                opts.steps = int(saved.get("steps", opts.steps))
            log(f"[train] resumed from {self.work} at step {self.step}")
        elif opts.resume:
            log(f"[train] --resume: no training state in {self.work}, starting from scratch")

    def _batch(self, data: TrainSet, idx: np.ndarray, keep: torch.Tensor):
        acts = self.model.action_space.normalize(torch.from_numpy(data.actions[idx]).float())
        return make_batch(self.model, self.tokenizer, self.prompts, data.images(idx), data.hist_xyz[idx],
                          [data.reasoning[i] for i in idx], acts, keep, device=self.opts.device)

    def _losses(self, data: TrainSet, idx: np.ndarray, keep: torch.Tensor, gen: torch.Generator) -> Losses:
        batch = self._batch(data, idx, keep)
        t = sample_flow_time(self.model, len(idx), gen)
        noise = torch.randn(batch.actions.shape, generator=gen)  # drawn on the CPU: the same on every device
        return training_losses(self.model, batch, t.to(batch.actions.device), noise.to(batch.actions.device))

    def validate(self, limit: int = 64) -> dict[str, float]:
        """Flow loss and reasoning-token accuracy on held-out bags (fixed samples, fixed noise)."""
        assert self.val is not None
        idx = np.linspace(0, len(self.val) - 1, min(limit, len(self.val))).astype(int)
        gen = torch.Generator().manual_seed(12345)
        self.model.eval()
        out = {"flow": 0.0, "lm": 0.0, "lm_acc": 0.0}
        with torch.no_grad():
            for chunk in np.array_split(idx, max(1, len(idx) // self.opts.batch_size)):
                keep = torch.ones(len(chunk), dtype=torch.bool)
                loss = self._losses(self.val, chunk, keep, gen)
                for k, v in (("flow", float(loss.flow)), ("lm", float(loss.lm)), ("lm_acc", loss.lm_accuracy)):
                    out[k] += v * len(chunk) / len(idx)
        self.model.train()
        return out

    def save(self) -> None:
        save_state(self.work, self.model, self.optimizer, self.step, self.gen, self.rng,
                   {"train_s": self.train_s, "history": self.history, "options": asdict(self.opts)})

    def _fit_to_budget(self, bar, mark: tuple[int, float]) -> None:
        # Fixed inside the warm-up, where the schedule does not depend on the step count, so the
        # run equals one started with --steps <fitted> (the count is recorded in training.json).
        opts = self.opts
        if self.step > opts.warmup:
            self.log(f"[train] --time-budget: the warm-up ({opts.warmup} steps) ends before step {self.step}; keeping {opts.steps} steps")
            return
        per_step = (self.train_s - mark[1]) / max(1, self.step - mark[0])
        steps = fitted_steps(opts.steps, self.step, per_step, opts.time_budget_s - self.train_s)
        if steps != opts.steps:
            self.log(f"[train] --time-budget {opts.time_budget_s / 60:g} min at {1e3 * per_step:.0f} ms/step: "
                     f"{steps} steps instead of {opts.steps} (rerun with --steps {steps} to reproduce)")
            opts.steps = steps
            bar.total = steps
            bar.refresh()

    def run(self) -> Path:
        from tqdm import tqdm

        opts = self.opts
        on_cuda = opts.device.startswith("cuda")
        mark: tuple[int, float] | None = None  # (step, train_s) where this run's pace measurement starts
        n = len(self.data)
        bar = tqdm(total=opts.steps, initial=self.step, desc="train", unit="step", disable=not opts.progress, dynamic_ncols=True)
        acc: dict[str, float] = {"flow": 0.0, "lm": 0.0, "lm_acc": 0.0}
        count = 0
        while self.step < opts.steps:
            t0 = time.perf_counter()
            for g in self.optimizer.param_groups:
                g["lr"] = lr_at(self.step, opts)
            idx = self.rng.choice(n, size=min(opts.batch_size, n), replace=False, p=self.weights)
            keep = torch.rand(len(idx), generator=self.gen) < opts.reasoning_keep
            loss = self._losses(self.data, idx, keep, self.gen)
            total = loss.flow + opts.lm_weight * loss.lm
            if not torch.isfinite(total):
                raise RuntimeError(f"training diverged at step {self.step} (loss {float(total)}); lower --lr")
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            if on_cuda:
                torch.cuda.synchronize()  # the step's GPU work belongs to its time (budget fit, card)
            self.step += 1
            self.train_s += time.perf_counter() - t0
            for k, v in (("flow", loss.flow.item()), ("lm", loss.lm.item()), ("lm_acc", loss.lm_accuracy)):
                acc[k] += v
            count += 1
            bar.update(1)
            if opts.time_budget_s and self.step < BUDGET_FIT_STEP and mark is None and (
                    self.step >= BUDGET_SKIP_STEPS or self.step + 1 == BUDGET_FIT_STEP):
                mark = (self.step, self.train_s)
            elif opts.time_budget_s and self.step == BUDGET_FIT_STEP and mark is not None:
                self._fit_to_budget(bar, mark)
            if self.step % opts.log_every == 0 or self.step == opts.steps:
                row = {"step": self.step, "lr": lr_at(self.step - 1, opts), **{k: v / count for k, v in acc.items()}}
                acc, count = {k: 0.0 for k in acc}, 0
                if self.val is not None and (self.step % opts.val_every == 0 or self.step == opts.steps):
                    row.update({f"val_{k}": v for k, v in self.validate().items()})
                self.history.append(row)
                bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k not in ("step", "lr")}, refresh=False)
                if not opts.progress:
                    self.log("[train] " + " ".join(f"{k} {v:.4g}" for k, v in row.items()))
            if self.step % opts.save_every == 0 and self.step < opts.steps:
                self.save()
        bar.close()
        self.save()
        return self.export()

    def export(self) -> Path:
        """The shipped checkpoint: config.json, model.safetensors, tokenizer.json, action_stats.json,
        training.json (what the card is written from) and MODEL_CARD.md."""
        self.model.eval()
        save_checkpoint(self.model, self.tokenizer, self.out)
        (self.out / "README.md").unlink(missing_ok=True)  # the card is MODEL_CARD.md
        summary = {
            "name": self.model.config.name, "command": self.opts.command, "seed": self.opts.seed,
            "steps": self.step, "batch_size": self.opts.batch_size, "lr": self.opts.lr, "lm_weight": self.opts.lm_weight,
            "reasoning_keep": self.opts.reasoning_keep, "balance": self.opts.balance, "device": self.opts.device, "device_name": device_name(self.opts.device),
            "train_time_s": round(self.train_s, 1), "data_time_s": round(self.data_s, 1),
            "parameters": self.model.num_parameters(),
            "bags": [b.name for b in self.data.bags], "examples": len(self.data), "skipped": self.data.skipped,
            "val_bags": [b.name for b in self.val.bags] if self.val else [],
            "action_stats": {"mean": list(self.stats.mean), "std": list(self.stats.std)},
            "action_roundtrip_m": {"mean": float(self.data.roundtrip_m.mean()), "max": float(self.data.roundtrip_m.max())},
            "maneuvers": {m: self.data.maneuver.count(m) for m in sorted(set(self.data.maneuver))},
            "final": self.history[-1] if self.history else {},
        }
        (self.out / "training.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        write_model_card(self.out)
        self.log(f"[train] wrote {self.out} ({self.model.num_parameters() / 1e6:.2f}M parameters, "
                 f"{self.train_s / 60:.1f} min of training)")
        return self.out
