"""`Policy`: prefill -> Context (K/V in preallocated buffers), reason(context) -> text,
denoise(context) -> actions, act(stack) -> PolicyOutput. Torch backend; no ROS.

The network is any model family (`vla_ros.model.family.Family`); this file holds what they all
share. Per tick:
1. vision: only images not in the (camera, stamp) cache are encoded by the family;
2. prefill: the family runs its prefix once, writing its K/V straight into the buffers;
3. reasoning (optional, families with text): decoding on the cache, masked tokens never decoded;
4. denoise: masks and rotary tables for the action tokens are built once, then N Euler steps of
   the family's suffix layers (eager, or one CUDA graph on CUDA); samples share the prefix cache;
5. the family decodes the actions (a trajectory or an action chunk); NaN/inf anywhere raises.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_ros.model import TextTokenizer, load_model
from vla_ros.model.build import parse_dtype
from vla_ros.model.family import DecodedActions, Family, ImageEmbedding
from vla_ros.model.flow_matching import FlowSchedule, flow_schedule
from vla_ros.runtime.context import Context, StaleContextError
from vla_ros.runtime.cuda_graph import DenoiseGraph
from vla_ros.runtime.expert_kernel import ExpertKernel
from vla_ros.runtime.inputs import PolicyInputError, PolicyInputs, validate_inputs
from vla_ros.runtime.kv_buffers import KVBuffers, KVCapacityError
from vla_ros.runtime.output import NonFiniteOutputError, PolicyOutput, Timings
from vla_ros.runtime.start_noise import start_noise
from vla_ros.runtime.vision_cache import VisionEmbeddingCache

BACKENDS = ("torch", "onnxruntime", "tensorrt")  # the latter two: onnx_backend.py, tensorrt_backend.py


class Policy:
    def __init__(self, model: Family, tokenizer: TextTokenizer, *, cuda_graph: bool | None = None,
                 max_samples: int = 8, max_reasoning_tokens: int = 64, vision_cache_size: int = 64,
                 compile: bool = False) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = model.config
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.kernel = ExpertKernel(model.suffix_layers(), model.suffix_norm)
        if compile:  # optional; unverified on GPU in this repository
            self.kernel.forward = torch.compile(self.kernel.forward, dynamic=False)  # type: ignore[method-assign]
        self.use_cuda_graph = (self.device.type == "cuda") if cuda_graph is None else bool(cuda_graph)
        if self.use_cuda_graph and self.device.type != "cuda":
            raise ValueError("cuda_graph=True needs a CUDA device")
        self.max_samples = max_samples
        self.max_reasoning_tokens = max_reasoning_tokens
        self.vision_cache = VisionEmbeddingCache(vision_cache_size)
        self.kv: KVBuffers | None = None
        self._schedules: dict[int, tuple[FlowSchedule, torch.Tensor]] = {}
        self._graphs: dict[tuple[int, int, int], DenoiseGraph] = {}
        self._suppress = model.text_logit_mask(tokenizer)  # None: the family has no text decoder

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, path_or_preset: str | Path, device: str | torch.device = "cpu",
                        dtype: str | torch.dtype | None = None, backend: str = "torch", **kwargs: Any) -> "Policy":
        """A checkpoint directory or `random:` preset. dtype defaults to bfloat16 on CUDA, float32 on CPU.
        backend 'onnxruntime' / 'tensorrt' return the exported-graph policies (extra kwargs go to them)."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
        if backend == "onnxruntime":
            from vla_ros.runtime.onnx_backend import OnnxRuntimePolicy
            return OnnxRuntimePolicy.from_pretrained(path_or_preset, device=device, dtype=dtype, **kwargs)
        if backend == "tensorrt":
            from vla_ros.runtime.tensorrt_backend import TensorRTPolicy
            return TensorRTPolicy.from_pretrained(path_or_preset, device=device, dtype=dtype, **kwargs)
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available")
        dt = parse_dtype(dtype) if dtype is not None else (torch.bfloat16 if dev.type == "cuda" else torch.float32)
        model, tokenizer = load_model(path_or_preset, device=dev, dtype=dt)
        return cls(model, tokenizer, **kwargs)

    @property
    def image_size_hw(self) -> tuple[int, int]:
        """The model's input image size; frames decoded to this size are not resized again."""
        return self.model.image_size_hw

    @property
    def num_waypoints(self) -> int:
        """Action tokens per sample (T)."""
        return self.model.action_shape[0]

    @property
    def action_dim(self) -> int:
        return self.model.action_shape[1]

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _now(self) -> float:
        self._sync()
        return time.perf_counter()

    # ------------------------------------------------------------------ prefill
    def _as_inputs(self, inputs: Any) -> PolicyInputs:
        if isinstance(inputs, PolicyInputs):
            return inputs
        if isinstance(inputs, Mapping):
            return PolicyInputs(**inputs)
        if hasattr(inputs, "images") and hasattr(inputs, "history"):  # a FrameStack
            return PolicyInputs.from_stack(inputs)
        raise PolicyInputError(f"prefill takes a FrameStack, PolicyInputs or a mapping, got {type(inputs).__name__}")

    def encode_images(self, images: np.ndarray, keys: list[Any] | None) -> tuple[list[ImageEmbedding], int]:
        """images uint8 (N, H, W, 3); keys per image or None (no caching) -> embeddings, number encoded."""
        cached: list[ImageEmbedding | None] = [self.vision_cache.get(k) for k in keys] if keys else [None] * len(images)
        todo = [i for i, e in enumerate(cached) if e is None]
        if todo:
            for i, emb in zip(todo, self.encode_uncached(images[todo])):
                cached[i] = emb
                if keys:
                    self.vision_cache.put(keys[i], emb)
        self.vision_cache.hits += len(images) - len(todo)
        self.vision_cache.misses += len(todo)
        return [e for e in cached if e is not None], len(todo)

    def encode_uncached(self, images: np.ndarray) -> list[ImageEmbedding]:
        """The vision tower on images uint8 (N, H, W, 3), one embedding each (backends override this)."""
        return self.model.encode_images(images, self.device, self.dtype)

    def _buffers(self, capacity: int) -> KVBuffers:
        suffix = self.max_samples * self.num_waypoints
        args = (*self.model.cache_shape(), capacity, suffix, self.device, self.dtype)
        if self.kv is None or not self.kv.fits(*args):
            # Round up so a slightly longer prompt next tick does not reallocate (and re-capture).
            rounded = (capacity + 63) // 64 * 64
            self.kv = KVBuffers(*args[:3], rounded, suffix, self.device, self.dtype)
            self._graphs.clear()
        return self.kv

    def _validated_inputs(self, inputs: Any) -> tuple[PolicyInputs, np.ndarray, np.ndarray, np.ndarray, list[Any] | None]:
        """-> inputs, images (V, F, H, W, 3), history xyz (N, 3), rot (N, 3, 3), and the
        vision-cache keys (camera, stamp, H, W) per image when names and stamps are given."""
        inp = self._as_inputs(inputs)
        cfg = self.config
        images, xyz, rot = validate_inputs(inp, cfg.image.num_cameras, cfg.image.num_frames, cfg.history.steps)
        v, f, h, w, _ = images.shape
        keys = None
        if inp.camera_names is not None and inp.stamps_ns is not None:
            stamps = np.asarray(inp.stamps_ns, dtype=np.int64)
            keys = [(inp.camera_names[i], int(stamps[i, j]), h, w) for i in range(v) for j in range(f)]
        return inp, images, xyz, rot, keys

    def prefill(self, inputs: Any, reasoning_budget: int | None = None) -> Context:
        """FrameStack | PolicyInputs | mapping -> Context. Reserves `reasoning_budget` cache slots
        (default max_reasoning_tokens) so that `reason` can follow."""
        inp, images, xyz, rot, keys = self._validated_inputs(inputs)
        v, f, h, w, _ = images.shape
        budget = self.max_reasoning_tokens if reasoning_budget is None else int(reasoning_budget)
        with torch.inference_mode():
            t0 = self._now()
            embeds, encoded = self.encode_images(images.reshape(v * f, h, w, 3), keys)
            t1 = self._now()
            plan = self.model.prefix_plan(embeds, xyz, self.tokenizer)
            length = plan.length
            kv = self._buffers(length + budget)
            kv.reset()
            cache = kv.cache()
            result = self.model.prefill(plan, embeds, cache)
            if cache.commit() != length:
                raise RuntimeError(f"the family's prefill cached {kv.length} tokens, its plan said {length}")
            t2 = self._now()
        return Context(epoch=kv.epoch, length=length, prompt_length=length, next_position=result.next_position,
                       logits=result.logits, history_xyz=torch.from_numpy(xyz),
                       history_rot=torch.from_numpy(rot), t0_ns=inp.t0_ns,
                       timings=Timings(vision_ms=(t1 - t0) * 1e3, prefill_ms=(t2 - t1) * 1e3),
                       vision_encoded=encoded, vision_reused=v * f - encoded)

    def _check(self, context: Context) -> KVBuffers:
        if self.kv is None or context.epoch != self.kv.epoch or context.length != self.kv.length:
            raise StaleContextError("this context's K/V were overwritten by a later prefill; prefill again")
        return self.kv

    # ------------------------------------------------------------------ reasoning
    def reason(self, context: Context, max_tokens: int, greedy: bool = True, temperature: float = 1.0,
               top_p: float = 1.0, generator: torch.Generator | None = None) -> str:
        """Decode up to max_tokens on the cache until the reasoning-end token (trajectory tokens
        masked). Every decoded token is appended to the cache, so the expert then attends to the
        reasoning. Advances `context` in place; returns the text."""
        kv = self._check(context)
        if self._suppress is None or context.logits is None:
            raise PolicyInputError(f"model family {self.config.architecture!r} has no text decoder to reason with")
        end = self.tokenizer.ids.reasoning_end
        new: list[int] = []
        with torch.inference_mode():
            t0 = self._now()
            cache = kv.cache()
            logits = context.logits
            if kv.length + max_tokens > kv.capacity:  # fail before decoding anything
                raise KVCapacityError(f"{max_tokens} reasoning tokens do not fit the {kv.capacity - kv.length} free "
                                      "cache slots; prefill with a larger reasoning_budget")
            for _ in range(max_tokens):
                scores = logits.masked_fill(self._suppress, float("-inf"))
                if greedy:
                    tok = int(scores.argmax(dim=-1))
                else:
                    tok = int(_sample(scores / max(temperature, 1e-5), top_p, generator))
                new.append(tok)
                logits = self.model.decode_token(tok, context.length, context.next_position, cache)
                kv.length = cache.commit()
                context.length += 1
                context.next_position += 1
                if tok == end:
                    break
            context.logits = logits
            context.reasoning_ids.extend(new)
            dt = (self._now() - t0) * 1e3
        context.timings.reasoning_ms = (context.timings.reasoning_ms or 0.0) + dt
        context.timings.reasoning_tokens = len(context.reasoning_ids)
        return self.tokenizer.decode(new, skip_special_tokens=True)

    # ------------------------------------------------------------------ denoising
    def schedule(self, steps: int | None = None) -> tuple[FlowSchedule, torch.Tensor]:
        """The flow schedule and its precomputed time terms (steps, mid), cached per step count."""
        n = int(steps if steps is not None else self.config.flow.steps)
        if n not in self._schedules:
            sched = flow_schedule(self.config.flow, n)
            with torch.inference_mode():
                t = torch.tensor(sched.times, device=self.device, dtype=torch.float32)
                self._schedules[n] = (sched, self.model.time_terms(t))
        return self._schedules[n]

    def _suffix_tables(self, context: Context, samples: int, graph: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int, int]:
        """Rotary cos/sin (1, S*T, 1, hd) and mask (1, 1, S*T, kv_len), built once per tick.
        Eager: suffix slots right after the prefix, kv_len = length + S*T. Graph: slots at
        `capacity` (fixed), kv_len = capacity + S*T, unused prefix slots masked. Every action
        token sees the whole prefix; among its own sample's tokens, the family's suffix_mask."""
        kv = self.kv
        assert kv is not None
        t = self.num_waypoints
        n = samples * t
        cos, sin = self.model.suffix_rope(context.next_position + torch.arange(t, device=self.device), self.dtype)
        cos = cos.repeat(samples, 1)[None, :, None]  # (1, S*T, 1, hd): broadcast over heads
        sin = sin.repeat(samples, 1)[None, :, None]
        offset = kv.capacity if graph else context.length
        kv_len = offset + n
        own = self.model.suffix_mask(t, self.device)  # (T, T) or None: all visible
        if own is None and not graph and (samples == 1 or self.device.type == "cpu"):
            # One sample: everything in [0, kv_len) is visible, no mask. Several on the CPU: the
            # kernel's split attention (no mask, no wasted sample-to-sample block).
            return cos, sin, None, offset, kv_len
        mask = torch.zeros(n, kv_len, dtype=torch.bool, device=self.device)
        mask[:, :context.length] = True
        for s in range(samples):  # each sample sees the prefix and its own T action tokens
            mask[s * t:(s + 1) * t, offset + s * t:offset + (s + 1) * t] = True if own is None else own
        return cos, sin, mask[None, None], offset, kv_len

    def _velocity(self, x: torch.Tensor, time_term: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  mask: torch.Tensor | None, offset: int, kv_len: int) -> torch.Tensor:
        """x (S, T, A) -> v (S, T, A)."""
        s, t, a = x.shape
        h = self.model.embed_suffix(x, time_term).reshape(1, s * t, -1)
        split = (kv_len - s * t, s) if (mask is None and s > 1) else None
        h = self.kernel.forward(h, cos, sin, self.kv, offset, kv_len, mask, split)  # type: ignore[arg-type]
        return self.model.decode_suffix(h).view(s, t, a)

    def velocity(self, context: Context, x: torch.Tensor, t: float) -> torch.Tensor:
        """The network's velocity at flow time t for actions x (S, T, A), using the cached prefix."""
        self._check(context)
        with torch.inference_mode():
            tt = self.model.time_terms(torch.tensor([t], device=self.device))[0]
            cos, sin, mask, off, kv_len = self._suffix_tables(context, x.shape[0], graph=False)
            return self._velocity(x.to(self.device, self.dtype), tt, cos, sin, mask, off, kv_len)

    def make_noise(self, samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn((samples, self.num_waypoints, self.action_dim), generator=generator,
                           device=self.device if generator is None else generator.device).to(self.device, self.dtype)

    def _checked_samples(self, noise: torch.Tensor | None, samples: int) -> int:
        """The sample count a denoise call runs: noise's first axis if given, else `samples`;
        PolicyInputError for a wrong noise shape, NaN/inf noise or a count beyond max_samples."""
        if noise is not None:
            samples = int(noise.shape[0])
            if tuple(noise.shape[1:]) != (self.num_waypoints, self.action_dim):
                raise PolicyInputError(f"noise must be (samples, {self.num_waypoints}, {self.action_dim}), got {tuple(noise.shape)}")
            if not torch.isfinite(noise).all():
                raise PolicyInputError("noise contains NaN or inf")
        if not 1 <= samples <= self.max_samples:
            raise PolicyInputError(f"samples must be in [1, {self.max_samples}] (max_samples), got {samples}")
        return samples

    def denoise(self, context: Context, noise: torch.Tensor | None = None, steps: int | None = None,
                samples: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """N Euler steps against the cached prefix -> normalized actions (S, T, A).

        noise (S, T, A) or None (drawn from `generator`); all S samples share one prefix cache."""
        self._check(context)
        samples = self._checked_samples(noise, samples)
        sched, time_terms = self.schedule(steps)
        with torch.inference_mode():
            t0 = self._now()
            x = self.make_noise(samples, generator) if noise is None else noise.to(self.device, self.dtype)
            cos, sin, mask, off, kv_len = self._suffix_tables(context, samples, graph=self.use_cuda_graph)
            if self.use_cuda_graph:
                x = self._graph(samples, sched, time_terms, x, cos, sin, mask).run(x, cos, sin, mask)
            else:
                for i, dt in enumerate(sched.dts):
                    x = x + dt * self._velocity(x, time_terms[i], cos, sin, mask, off, kv_len)
            context.timings.denoise_ms = (self._now() - t0) * 1e3
        return x

    def _graph(self, samples: int, sched: FlowSchedule, time_terms: torch.Tensor, x: torch.Tensor,
               cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> DenoiseGraph:
        kv = self.kv
        assert kv is not None
        key = (samples, sched.steps, kv.capacity)
        if key not in self._graphs:
            off, kv_len = kv.capacity, kv.capacity + samples * self.num_waypoints

            def loop(xs: torch.Tensor, c: torch.Tensor, s: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
                for i, dt in enumerate(sched.dts):
                    xs = xs + dt * self._velocity(xs, time_terms[i], c, s, m, off, kv_len)
                return xs

            self._graphs[key] = DenoiseGraph(loop, x, cos, sin, mask)
        return self._graphs[key]

    # ------------------------------------------------------------------ whole tick
    def decode(self, actions: torch.Tensor, context: Context) -> DecodedActions:
        """The family's decoding of normalized actions (S, T, A): physical units, and a trajectory
        in the t0 frame for families that drive a path."""
        return self.model.decode_actions(actions.detach().float().cpu(), context.history_xyz, context.history_rot)

    def act(self, stack: Any, *, reasoning: bool = False, max_reasoning_tokens: int | None = None,
            samples: int = 1, steps: int | None = None, noise: torch.Tensor | None = None,
            generator: torch.Generator | None = None, noise_scale: float = 1.0) -> PolicyOutput:
        """One tick: prefill, optional reasoning, denoise, decode. Raises on NaN/inf output.
        Without `noise`, the start noise is drawn here from `generator`, scaled by `noise_scale`
        (inference.noise_scale: 0 = deterministic), so a caller in another process (the node)
        sends a number, not a tensor."""
        start = time.perf_counter()
        if noise is None and noise_scale != 1.0:
            noise = start_noise(self.num_waypoints, self.action_dim, samples, noise_scale, generator)
        budget = (max_reasoning_tokens or self.max_reasoning_tokens) if reasoning else 0
        ctx = self.prefill(stack, reasoning_budget=budget)
        text = self.reason(ctx, budget) if reasoning else None
        actions = self.denoise(ctx, noise=noise, steps=steps, samples=samples, generator=generator)
        t0 = time.perf_counter()
        out = self.decode(actions, ctx)
        for name, value in (("actions", actions), ("xyz", out.xyz), ("rot", out.rot), ("physical actions", out.actions)):
            if value is not None and not torch.isfinite(value).all():
                raise NonFiniteOutputError(f"policy output {name} contains NaN or inf; not returned")
        timings = ctx.timings
        timings.decode_ms = (time.perf_counter() - t0) * 1e3
        timings.total_ms = (time.perf_counter() - start) * 1e3
        return PolicyOutput(actions=out.actions.numpy(), raw_actions=actions.detach().float().cpu().numpy(),
                            action_names=out.names, action_units=out.units, t0_ns=ctx.t0_ns,
                            dt=self.config.action_space.dt,
                            xyz=None if out.xyz is None else out.xyz.numpy(),
                            rot=None if out.rot is None else out.rot.numpy(), reasoning=text, timings=timings,
                            vision_encoded=ctx.vision_encoded, vision_reused=ctx.vision_reused)


def _sample(scores: torch.Tensor, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Nucleus sampling from (1, V) scores."""
    probs = torch.softmax(scores, dim=-1)
    if top_p < 1.0:
        sorted_p, idx = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, idx, sorted_p)
    return torch.multinomial(probs, 1, generator=generator)[0, 0]
