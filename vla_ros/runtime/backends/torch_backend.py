"""The `torch` backend: the family's own modules, K/V in preallocated buffers, the expert kernel.

1. vision: the family's vision tower on the images the Policy's cache did not hold;
2. prefill: the family writes its prefix K/V straight into the buffers (`KVBuffers.cache()`);
3. reasoning (families with text): decoding on the cache, masked tokens never decoded;
4. denoise: rotary tables and the mask for the action tokens are built once per tick, then N
   Euler steps of `ExpertKernel` over the family's suffix layers (eager, or one CUDA graph on
   CUDA); samples share the prefix cache. A guide (real-time chunking, `runtime/rtc.py`) adds
   its correction to every step's velocity, in the eager loop and inside the CUDA graph.
   Navigation guidance (Alpamayo 1.5's classifier-free guidance) keeps a second prefix, the
   prompt without its route span plus the same reasoning tokens, in its own buffers of the same
   layout, and blends the two velocities every step, eagerly or inside the CUDA graph (its rotary
   tables and mask are further static inputs).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vla_ros.model.family import Family, ImageEmbedding
from vla_ros.model.flow_matching import FlowSchedule, flow_schedule
from vla_ros.model.traced_step import TracedStep
from vla_ros.runtime.backends.protocol import PrefixState
from vla_ros.runtime.cuda_graph import DenoiseGraph
from vla_ros.runtime.expert_kernel import ExpertKernel
from vla_ros.runtime.inputs import PolicyInputError
from vla_ros.runtime.kv_buffers import KVBuffers, KVCapacityError, SampleKV
from vla_ros.runtime.rtc import GuideTensors, guided_velocity, step_coefficients


class TorchBackend:
    name = "torch"

    def __init__(self, model: Family, tokenizer: Any, *, max_samples: int, cuda_graph: bool | None = None,
                 compile: bool = False) -> None:
        self.model = model
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
        self.num_waypoints = model.action_shape[0]
        self.kv: KVBuffers | None = None
        self.kv_unguided: KVBuffers | None = None  # navigation guidance's second prefix
        self._schedules: dict[int, tuple[FlowSchedule, torch.Tensor]] = {}
        self._graphs: dict[tuple[int, int, int, bool, float | None], DenoiseGraph] = {}
        self._traces: dict[int, TracedStep] = {}  # the CPU's traced denoising step per sample count
        self._suppress = model.text_logit_mask(tokenizer)  # None: the family has no text decoder

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------------ prefix
    def encode_images(self, images: np.ndarray) -> list[ImageEmbedding]:
        with torch.inference_mode():
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

    def prefill(self, plan: Any, embeds: list[ImageEmbedding], budget: int, unguided: Any = None) -> PrefixState:
        """unguided: navigation guidance's second plan (the prompt without its route span), cached
        in its own buffers of the same capacity; the images' embeddings are shared."""
        with torch.inference_mode():
            kv = self._buffers(plan.length + budget)
            kv.reset()
            cache = kv.cache()
            result = self.model.prefill(plan, embeds, cache)
            if cache.commit() != plan.length:
                raise RuntimeError(f"the family's prefill cached {kv.length} tokens, its plan said {plan.length}")
            second = None
            if unguided is not None:
                if unguided.length > plan.length:
                    raise RuntimeError("the unguided prompt must not be longer than the prompt")
                ku = self.kv_unguided
                if ku is None or ku.capacity != kv.capacity or not ku.fits(*self.model.cache_shape(), kv.capacity,
                                                                            kv.suffix_slots, self.device, self.dtype):
                    ku = self.kv_unguided = KVBuffers(*self.model.cache_shape(), kv.capacity, kv.suffix_slots,
                                                      self.device, self.dtype)
                    self._graphs.clear()  # guided graphs read the unguided buffers they were captured with
                ku.reset()
                cache_u = ku.cache()
                second_result = self.model.prefill(unguided, embeds, cache_u)
                if cache_u.commit() != unguided.length:
                    raise RuntimeError(f"the unguided prefill cached {ku.length} tokens, its plan said {unguided.length}")
                second = (unguided.length, second_result.next_position)
        return PrefixState(epoch=kv.epoch, length=plan.length, next_position=result.next_position,
                           logits=result.logits, unguided=second)

    def is_current(self, context: Any) -> bool:
        if self.kv is None or context.epoch != self.kv.epoch or context.length != self.kv.length:
            return False
        g = getattr(context, "guidance", None)
        return g is None or (self.kv_unguided is not None and g.length == self.kv_unguided.length)

    def prefix_kv(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        assert self.kv is not None
        k = torch.stack([b[0, :, :length] for b in self.kv.keys]).float().cpu().numpy()
        v = torch.stack([b[0, :, :length] for b in self.kv.values]).float().cpu().numpy()
        return k, v

    # ------------------------------------------------------------------ reasoning
    def reason(self, context: Any, max_tokens: int, greedy: bool = True, temperature: float = 1.0,
               top_p: float = 1.0, generator: torch.Generator | None = None) -> list[int]:
        """Decode up to max_tokens on the cache until the stop token (`prompt.reasoning_stop`: the
        reasoning-end token, or Alpamayo-R1's <|traj_future_start|>). Every decoded token
        is appended to the cache, so the expert then attends to the reasoning (for Alpamayo, not
        the one sampled in the budget's last slot, as in the reference). Advances `context`
        (length, next_position, logits) in place; returns the new token ids."""
        kv = self.kv
        assert kv is not None
        if self._suppress is None or context.logits is None:
            raise PolicyInputError(f"model family {self.config.architecture!r} has no text decoder to reason with")
        if kv.length + max_tokens > kv.capacity:  # fail before decoding anything
            raise KVCapacityError(f"{max_tokens} reasoning tokens do not fit the {kv.capacity - kv.length} free "
                                  "cache slots; prefill with a larger reasoning_budget")
        release = self.config.prompt.reasoning_stop == "future_start"
        end = self.tokenizer.ids.future_start if release else self.tokenizer.ids.reasoning_end
        guidance = getattr(context, "guidance", None)
        new: list[int] = []
        with torch.inference_mode():
            cache = kv.cache()
            logits = context.logits
            for i in range(max_tokens):
                scores = logits.masked_fill(self._suppress, float("-inf"))
                if greedy:
                    tok = int(scores.argmax(dim=-1))
                else:
                    tok = int(_sample(scores / max(temperature, 1e-5), top_p, generator))
                new.append(tok)
                if guidance is not None:  # the unguided prefix is fed every generated token
                    self._feed_unguided(tok, guidance)
                if release and i == max_tokens - 1:
                    # Alpamayo (budget spent): generate never feeds its last token, not even a
                    # <|traj_future_start|>, yet the expert's positions continue after it.
                    context.next_position += 1
                    break
                logits = self.model.decode_token(tok, context.length, context.next_position, cache)
                kv.length = cache.commit()
                context.length += 1
                context.next_position += 1
                if tok == end:
                    break
            context.logits = logits
        return new

    def _feed_unguided(self, token: int, guidance: Any) -> None:
        """Alpamayo 1.5's unguided prefix runs the generated tokens after its own prompt, all of
        them (also the last one of a rollout whose budget ran out, which the guided cache never
        holds); its expert then sees everything up to and including <|traj_future_start|>."""
        ku = self.kv_unguided
        assert ku is not None
        cache = ku.cache()
        self.model.decode_token(token, guidance.length, guidance.next_position, cache, logits=False)
        ku.length = cache.commit()
        guidance.length += 1
        guidance.next_position += 1

    def rewind(self, context: Any, length: int, next_position: int, logits: torch.Tensor) -> None:
        """Drop the cached tokens after `length` (reasoning); the prompt's K/V stay, so the next
        `reason` decodes again from there (a per-sample rollout)."""
        kv = self.kv
        assert kv is not None and length <= kv.length
        kv.length = length
        context.length, context.next_position, context.logits = length, next_position, logits
        g = getattr(context, "guidance", None)
        if g is not None and self.kv_unguided is not None:  # back to the unguided prompt alone
            self.kv_unguided.length = g.length = g.prompt_length
            g.next_position = g.prompt_next_position

    # ------------------------------------------------------------------ denoising
    def schedule(self, steps: int | None = None) -> tuple[FlowSchedule, torch.Tensor]:
        """The flow schedule and its precomputed time terms, cached per step count."""
        n = int(steps if steps is not None else self.config.flow.steps)
        if n not in self._schedules:
            sched = flow_schedule(self.config.flow, n)
            with torch.inference_mode():
                t = torch.tensor(sched.times, device=self.device, dtype=torch.float32)
                self._schedules[n] = (sched, self.model.time_terms(t))
        return self._schedules[n]

    def _suffix_tables(self, context: Any, samples: int,
                       graph: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int, int]:
        return self._tables(context.length, context.next_position, samples, graph)

    def _tables(self, length: int, next_position: int, samples: int,
                graph: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int, int]:
        """Rotary cos/sin (1, S*T, 1, hd) and mask (1, 1, S*T, kv_len), built once per tick.
        Eager: suffix slots right after the prefix, kv_len = length + S*T. Graph: slots at
        `capacity` (fixed), kv_len = capacity + S*T, unused prefix slots masked. Every action
        token sees the whole prefix (`length` tokens); among its own sample's tokens, the family's
        suffix_mask. The unguided prefix's buffers have the same capacity, so the same layout."""
        kv = self.kv
        assert kv is not None
        t = self.num_waypoints
        n = samples * t
        cos, sin = self.model.suffix_rope(next_position + torch.arange(t, device=self.device), self.dtype)
        cos = cos.repeat(samples, 1)[None, :, None]  # (1, S*T, 1, hd): broadcast over heads
        sin = sin.repeat(samples, 1)[None, :, None]
        offset = kv.capacity if graph else length
        kv_len = offset + n
        own = self.model.suffix_mask(t, self.device)  # (T, T) or None: all visible
        if own is None and not graph and (samples == 1 or self.device.type == "cpu"):
            # No mask: each sample's [prefix | own tokens] in `SampleKV` (one sample: views of the
            # buffers; several on the CPU: no wasted sample-to-sample block).
            return cos, sin, None, offset, kv_len
        mask = torch.zeros(n, kv_len, dtype=torch.bool, device=self.device)
        mask[:, :length] = True
        for s in range(samples):  # each sample sees the prefix and its own T action tokens
            mask[s * t:(s + 1) * t, offset + s * t:offset + (s + 1) * t] = True if own is None else own
        return cos, sin, mask[None, None], offset, kv_len

    def _per_sample(self, kv: KVBuffers | None, mask: torch.Tensor | None, offset: int, samples: int) -> SampleKV | None:
        """The eager layout without a mask (see `_tables`): the samples' K/V as `SampleKV` over the
        prefix of `kv` ([0, offset)); None with a mask (the buffers' own suffix slots)."""
        if mask is not None or kv is None:
            return None
        return kv.per_sample(offset, samples, self.num_waypoints)

    def _velocity(self, x: torch.Tensor, time_term: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  mask: torch.Tensor | None, offset: int, kv_len: int, kv: KVBuffers | None = None,
                  per_sample: SampleKV | None = None) -> torch.Tensor:
        """x (S, T, A) -> v (S, T, A) against the prefix in `kv` (default: the prompt's), or in
        `per_sample` (the layout without a mask: see `_per_sample`; on the CPU through the
        step's trace, `_traced`)."""
        if per_sample is not None and self.device.type == "cpu":
            v = self._traced(x, time_term, cos, sin, per_sample)
            if v is not None:
                return v
        return self._velocity_eager(x, time_term, cos, sin, mask, offset, kv_len, kv, per_sample)

    def _velocity_eager(self, x: torch.Tensor, time_term: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                        mask: torch.Tensor | None, offset: int, kv_len: int, kv: KVBuffers | None = None,
                        per_sample: SampleKV | None = None) -> torch.Tensor:
        s, t, a = x.shape
        h = self.model.embed_suffix(x, time_term).reshape(1, s * t, -1)
        h = self.kernel.forward(h, cos, sin, kv or self.kv, offset, kv_len, mask, per_sample)  # type: ignore[arg-type]
        return self.model.decode_suffix(h).view(s, t, a)

    def _traced(self, x: torch.Tensor, time_term: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                per_sample: SampleKV) -> torch.Tensor | None:
        """The velocity through a trace of `_velocity_eager` (CPU, `SampleKV` layout; see
        `vla_ros.model.traced_step`), one per sample count: velocity 1.38 -> 1.02 ms on the tiny
        R1 fixture. The K/V tensors are inputs, so one trace serves every tick. None: a
        torch.compile'd (or replaced) kernel, which is not ours to trace."""
        if "forward" in vars(self.kernel):
            return None
        s, t = per_sample.samples, per_sample.tokens
        step = self._traces.get(s)
        if step is None:
            layers = len(per_sample.keys)

            def eager(x: torch.Tensor, time_term: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                      *kv: torch.Tensor) -> torch.Tensor:
                own = SampleKV(list(kv[:layers]), list(kv[layers:]), s, t)
                return self._velocity_eager(x, time_term, cos, sin, None, 0, 0, None, own)

            step = self._traces[s] = TracedStep(eager, self.model, "denoising step")
        k0 = per_sample.keys[0]  # checked once per K/V length and layout (a reallocated buffer: new strides)
        return step((k0.shape[2], k0.stride(), x.dtype), x, time_term, cos, sin, *per_sample.tensors())

    def _guided(self, context: Any, samples: int, graph: bool = False) -> tuple[Any, ...] | None:
        """Navigation guidance's per-tick inputs: (weight, cos, sin, mask, offset, kv_len) of the
        unguided prefix, or None on a plain tick. Graph layout: the same suffix slots and kv_len
        as the prompt's (both buffers have the same capacity)."""
        g = getattr(context, "guidance", None)
        if g is None:
            return None
        return (g.weight, *self._tables(g.length, g.next_position, samples, graph=graph))

    def _blend(self, x: torch.Tensor, time_term: torch.Tensor, v: torch.Tensor, guided: tuple[Any, ...],
               per_sample_u: SampleKV | None = None) -> torch.Tensor:
        """(1 - w) * v(unguided prefix) + w * v(prompt), as Alpamayo 1.5's FlowMatching._guided_v."""
        w, cos_u, sin_u, mask_u, off_u, len_u = guided
        v_u = self._velocity(x, time_term, cos_u, sin_u, mask_u, off_u, len_u, self.kv_unguided, per_sample_u)
        return (1 - w) * v_u + w * v

    def velocity(self, context: Any, x: torch.Tensor, t: float) -> torch.Tensor:
        """The velocity an Euler step uses at flow time t (navigation guidance's blend on a guided tick)."""
        with torch.inference_mode():
            tt = self.model.time_terms(torch.tensor([t], device=self.device))[0]
            x = x.to(self.device, self.dtype)
            cos, sin, mask, off, kv_len = self._suffix_tables(context, x.shape[0], graph=False)
            v = self._velocity(x, tt, cos, sin, mask, off, kv_len, None, self._per_sample(self.kv, mask, off, x.shape[0]))
            guided = self._guided(context, x.shape[0])
            if guided is None:
                return v
            return self._blend(x, tt, v, guided, self._per_sample(self.kv_unguided, guided[3], guided[4], x.shape[0]))

    def _guide_inputs(self, sched: FlowSchedule, guide: GuideTensors) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(target (T, A), weights (T, 1), per-step scales (steps,)) on the device: the guide's
        tensors, the static inputs of a guided CUDA graph (a new guide needs no re-capture)."""
        scales = step_coefficients(self.config.flow, sched, guide.max_guidance_weight).scales
        return (guide.target.to(self.device, self.dtype), guide.weights.to(self.device, self.dtype),
                torch.tensor(scales, device=self.device, dtype=self.dtype))

    def _steps(self, sched: FlowSchedule, time_terms: torch.Tensor, off: int, kv_len: int, x: torch.Tensor,
               cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None, *guide: torch.Tensor,
               nav: tuple[Any, ...] | None = None) -> torch.Tensor:
        """The Euler loop, guided when `guide` = (target, weights, scales) is given (real-time
        chunking), towards the navigation instruction when `nav` is (see `_guided`)."""
        reaches = step_coefficients(self.config.flow, sched, 1.0).reaches if guide else ()
        per_sample = self._per_sample(self.kv, mask, off, x.shape[0])
        per_sample_u = None if nav is None else self._per_sample(self.kv_unguided, nav[3], nav[4], x.shape[0])
        for i, dt in enumerate(sched.dts):
            v = self._velocity(x, time_terms[i], cos, sin, mask, off, kv_len, None, per_sample)
            if nav is not None:
                v = self._blend(x, time_terms[i], v, nav, per_sample_u)
            if guide:
                target, weights, scales = guide
                v = guided_velocity(x, v, target, weights, scales[i], reaches[i])
            x = x + dt * v
        return x

    def denoise(self, context: Any, x: torch.Tensor, steps: int | None,
                guide: GuideTensors | None = None) -> torch.Tensor:
        sched, time_terms = self.schedule(steps)
        samples = x.shape[0]
        with torch.inference_mode():
            x = x.to(self.device, self.dtype)
            extra = () if guide is None else self._guide_inputs(sched, guide)
            nav = self._guided(context, samples, graph=self.use_cuda_graph)
            cos, sin, mask, off, kv_len = self._suffix_tables(context, samples, graph=self.use_cuda_graph)
            if self.use_cuda_graph:
                weight, nav_tables = (None, ()) if nav is None else (nav[0], tuple(nav[1:4]))
                graph = self._graph(samples, sched, time_terms, x, cos, sin, mask, extra, weight, nav_tables)
                return graph.run(x, cos, sin, mask, extra + nav_tables)
            return self._steps(sched, time_terms, off, kv_len, x, cos, sin, mask, *extra, nav=nav)

    def _graph(self, samples: int, sched: FlowSchedule, time_terms: torch.Tensor, x: torch.Tensor,
               cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
               extra: tuple[torch.Tensor, ...] = (), nav_weight: float | None = None,
               nav_tables: tuple[torch.Tensor, ...] = ()) -> DenoiseGraph:
        """One graph per (samples, steps, capacity, guided or not, navigation weight). The RTC
        guide's tensors and navigation guidance's unguided cos / sin / mask are static inputs
        after the prompt's; the weight is baked in."""
        kv = self.kv
        assert kv is not None
        key = (samples, sched.steps, kv.capacity, bool(extra), nav_weight)
        if key not in self._graphs:
            off, kv_len = kv.capacity, kv.capacity + samples * self.num_waypoints
            n_rtc = len(extra)

            def loop(xs: torch.Tensor, c: torch.Tensor, s: torch.Tensor, m: torch.Tensor,
                     *inputs: torch.Tensor) -> torch.Tensor:
                nav = None if nav_weight is None else (nav_weight, *inputs[n_rtc:], off, kv_len)
                return self._steps(sched, time_terms, off, kv_len, xs, c, s, m, *inputs[:n_rtc], nav=nav)

            self._graphs[key] = DenoiseGraph(loop, x, cos, sin, mask, extra + nav_tables)
        return self._graphs[key]


def _sample(scores: torch.Tensor, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Nucleus sampling from (1, V) scores."""
    probs = torch.softmax(scores, dim=-1)
    if top_p < 1.0:
        sorted_p, idx = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, idx, sorted_p)
    return torch.multinomial(probs, 1, generator=generator)[0, 0]
