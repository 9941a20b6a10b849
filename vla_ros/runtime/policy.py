"""`Policy`: prefill -> Context, reason(context) -> text, denoise(context) -> actions,
act(stack) -> PolicyOutput. No ROS.

The network is any model family (`vla_ros.model.family.Family`) and the stages run on any backend
(`vla_ros.runtime.backends.protocol.Backend`: torch by default, ONNX Runtime, TensorRT). This
file holds what every family and backend share. Per tick:
1. inputs are validated; images not in the (camera, stamp) cache are encoded by the backend;
2. prefill: the family plans its prefix, the backend runs it into its K/V cache (with
   navigation guidance, Alpamayo 1.5: also the prompt without its route span, in a second cache);
3. reasoning (optional, torch backend, families with text): decoding on the cache;
4. denoise: the start noise (scaled, or drawn here), then N Euler steps on the backend,
   optionally guided towards the previous chunk's leftover (real-time chunking, `rtc.py`) and
   towards the navigation instruction (classifier-free guidance: the two prefixes' velocities blended);
5. the family decodes the actions (a trajectory or an action chunk); NaN/inf anywhere raises.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_ros.model import TextTokenizer
from vla_ros.model.family import DecodedActions, Family, ImageEmbedding
from vla_ros.model.prompt import NavigationPromptError, PromptInputError
from vla_ros.runtime.backends.protocol import Backend, nav_guidance_unsupported
from vla_ros.runtime.context import Context, GuidancePrefix, StaleContextError
from vla_ros.runtime.inputs import (PolicyInputError, PolicyInputs, RouteRefusedError, validate_camera_ids,
                                    validate_inputs, validate_navigation, validate_robot_inputs)
from vla_ros.runtime.output import NonFiniteOutputError, PolicyOutput, Timings
from vla_ros.runtime.rtc import ChunkGuide
from vla_ros.runtime.start_noise import start_noise
from vla_ros.runtime.vision_cache import VisionEmbeddingCache


class Policy:
    def __init__(self, model: Family, tokenizer: TextTokenizer, backend: Backend | None = None, *,
                 cuda_graph: bool | None = None, max_samples: int = 8, max_reasoning_tokens: int = 64,
                 vision_cache_size: int = 64, compile: bool = False,
                 nav_guidance_weight: float | None = None) -> None:
        """backend None: the torch backend on the model's device and dtype (cuda_graph and
        compile apply to it). Exported backends are made by `backends.loader` (see from_pretrained).

        nav_guidance_weight: classifier-free guidance towards the navigation instruction (models
        that take one, `takes_navigation`), overriding the checkpoint's `flow.nav_guidance_weight`
        (Alpamayo 1.5's diffusion_cfg); 1.0 turns it off. It runs on the torch backend (eager or
        in the CUDA graph); the exported backends refuse it."""
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = model.config
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype  # where the start noise is made
        # Families fed a robot state and an instruction (pi0 / pi0.5) say so; the others take an ego history.
        self._robot_state_dim: int | None = getattr(model, "robot_state_dim", None)
        self.nav_guidance_weight = self._guidance_weight(nav_guidance_weight)
        if backend is None:
            from vla_ros.runtime.backends.torch_backend import TorchBackend

            backend = TorchBackend(model, tokenizer, max_samples=max_samples, cuda_graph=cuda_graph, compile=compile)
        elif self.nav_guidance_weight is not None and backend.name != "torch":
            raise nav_guidance_unsupported("this model", self.nav_guidance_weight, backend.name)
        self.backend = backend
        self.max_samples = max_samples
        self.max_reasoning_tokens = max_reasoning_tokens
        self.vision_cache = VisionEmbeddingCache(vision_cache_size)

    @classmethod
    def from_pretrained(cls, path_or_preset: str | Path, device: str | torch.device = "cpu",
                        dtype: str | torch.dtype | None = None, backend: str = "torch", **kwargs: Any) -> "Policy":
        """A checkpoint directory or `random:` preset on backend 'torch' | 'onnxruntime' |
        'tensorrt'. dtype defaults to bfloat16 on CUDA, float32 on CPU for torch, and to the
        export's default for the others; extra kwargs go to the backend or the Policy."""
        from vla_ros.runtime.backends.loader import load_policy

        return load_policy(cls, path_or_preset, device=device, dtype=dtype, backend=backend, **kwargs)

    def _guidance_weight(self, override: float | None) -> float | None:
        """The navigation guidance weight in effect: None when off (weight 1 is the guided velocity alone)."""
        flow = getattr(self.config, "flow", None)
        w = getattr(flow, "nav_guidance_weight", None) if override is None else override
        if w is None:
            return None
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise ValueError(f"nav_guidance_weight must be a number, got {w!r}") from None
        if not math.isfinite(w):
            raise ValueError(f"nav_guidance_weight must be finite, got {w}")
        if not self.takes_navigation:
            if override is not None and w != 1.0:
                raise ValueError("nav_guidance_weight: this model takes no navigation instruction")
            return None
        return None if w == 1.0 else w

    @property
    def takes_navigation(self) -> bool:
        """The model's prompt carries a navigation instruction (PolicyInputs.task; Alpamayo 1.5)."""
        return bool(getattr(getattr(self.config, "prompt", None), "navigation", False)) and self._robot_state_dim is None

    @property
    def needs_camera_ids(self) -> bool:
        """The model's prompt names each camera: PolicyInputs.camera_ids is required (Alpamayo 1.5)."""
        prompt = getattr(self.config, "prompt", None)
        return bool(prompt is not None and getattr(prompt, "needs_camera_ids", False))

    @property
    def variable_cameras(self) -> bool:
        """The model takes any number of cameras (1 to MAX_CAMERAS; Alpamayo 1.5); otherwise
        exactly config.image.num_cameras."""
        return bool(getattr(self.config.image, "variable_cameras", False))

    @property
    def image_size_hw(self) -> tuple[int, int]:
        """The model's input image size; frames decoded to this size are not resized again."""
        return self.model.image_size_hw

    @property
    def robot_dims(self) -> tuple[int, int] | None:
        """(state, action) sizes of a family fed a robot state that outputs action chunks
        (pi0 / pi0.5); None for a family that drives a path."""
        if self._robot_state_dim is None:
            return None
        return self._robot_state_dim, int(getattr(self.model, "robot_action_dim", self.action_dim))

    @property
    def num_waypoints(self) -> int:
        """Action tokens per sample (T)."""
        return self.model.action_shape[0]

    @property
    def action_dim(self) -> int:
        return self.model.action_shape[1]

    def _now(self) -> float:
        self.backend.synchronize()
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
            for i, emb in zip(todo, self.backend.encode_images(images[todo])):
                cached[i] = emb
                if keys:
                    self.vision_cache.put(keys[i], emb)
        self.vision_cache.hits += len(images) - len(todo)
        self.vision_cache.misses += len(todo)
        return [e for e in cached if e is not None], len(todo)

    def _validated_inputs(self, inputs: Any) -> tuple[PolicyInputs, np.ndarray, np.ndarray, np.ndarray, list[Any] | None]:
        """-> inputs, images (V, F, H, W, 3), history xyz (N, 3), rot (N, 3, 3), and the
        vision-cache keys (camera, stamp, H, W) per image when names and stamps are given."""
        inp = self._as_inputs(inputs)
        cfg = self.config
        if self._robot_state_dim is None:
            cameras = 0 if self.variable_cameras else cfg.image.num_cameras
            images, xyz, rot = validate_inputs(inp, cameras, cfg.image.num_frames, cfg.history.steps)
        else:  # a robot-arm family: state and instruction instead of an ego history
            images, xyz, rot = validate_inputs(inp, cfg.image.num_cameras, cfg.image.num_frames, 0, float_images=True)
            validate_robot_inputs(inp, self._robot_state_dim)
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
        prompt_args: dict[str, Any] = {}  # only what the model's prompt takes (families without them)
        unguided = None
        if self._robot_state_dim is None:
            cams = validate_camera_ids(inp, v, self.needs_camera_ids)
            nav = validate_navigation(inp, self.takes_navigation)
            if cams is not None:
                prompt_args["camera_ids"] = cams
            if nav is not None:
                prompt_args["navigation"] = nav
        t0 = self._now()
        embeds, encoded = self.encode_images(images.reshape(v * f, h, w, 3), keys)
        t1 = self._now()
        with torch.inference_mode():
            if self._robot_state_dim is None:
                try:
                    plan = self.model.prefix_plan(embeds, xyz, self.tokenizer, **prompt_args)
                    if "navigation" in prompt_args and self.nav_guidance_weight is not None:
                        # Classifier-free guidance's other prefix: the same prompt without the route span.
                        unguided_args = {k: a for k, a in prompt_args.items() if k != "navigation"}
                        unguided = self.model.prefix_plan(embeds, xyz, self.tokenizer, **unguided_args)
                except NavigationPromptError as exc:
                    raise RouteRefusedError(str(exc)) from exc
                except PromptInputError as exc:
                    raise PolicyInputError(str(exc)) from exc
            else:
                state, task = validate_robot_inputs(inp, self._robot_state_dim)
                plan = self.model.prefix_plan(embeds, xyz, self.tokenizer, state=state, task=task)
        if unguided is None:
            state = self.backend.prefill(plan, embeds, budget)
        else:
            state = self.backend.prefill(plan, embeds, budget, unguided=unguided)  # type: ignore[call-arg]
        t2 = self._now()
        guidance = None
        if state.unguided is not None:
            assert self.nav_guidance_weight is not None
            length_u, position_u = state.unguided
            guidance = GuidancePrefix(weight=self.nav_guidance_weight, length=length_u, next_position=position_u,
                                      prompt_length=length_u, prompt_next_position=position_u)
        return Context(epoch=state.epoch, length=state.length, prompt_length=state.length,
                       next_position=state.next_position, logits=state.logits, history_xyz=torch.from_numpy(xyz),
                       history_rot=torch.from_numpy(rot), t0_ns=inp.t0_ns,
                       timings=Timings(vision_ms=(t1 - t0) * 1e3, prefill_ms=(t2 - t1) * 1e3),
                       vision_encoded=encoded, vision_reused=v * f - encoded,
                       prompt_tokens_dropped=int(getattr(plan, "tokens_dropped", 0)), guidance=guidance)

    def _check(self, context: Context) -> None:
        if not self.backend.is_current(context):
            raise StaleContextError("this context's K/V were overwritten by a later prefill; prefill again")

    # ------------------------------------------------------------------ reasoning
    def reason(self, context: Context, max_tokens: int, greedy: bool = True, temperature: float = 1.0,
               top_p: float = 1.0, generator: torch.Generator | None = None) -> str:
        """Decode up to max_tokens on the cache until the reasoning-end token (masked tokens never
        decoded). The expert then attends to the reasoning. Advances `context`; returns the text."""
        self._check(context)
        t0 = self._now()
        new = self.backend.reason(context, max_tokens, greedy, temperature, top_p, generator)
        context.reasoning_ids.extend(new)
        context.timings.reasoning_ms = (context.timings.reasoning_ms or 0.0) + (self._now() - t0) * 1e3
        context.timings.reasoning_tokens = len(context.reasoning_ids)
        return self.tokenizer.decode(new, skip_special_tokens=True)

    def reason_per_sample(self, context: Context, max_tokens: int, noise: torch.Tensor | None = None,
                          samples: int = 1, steps: int | None = None, greedy: bool = False,
                          temperature: float = 0.6, top_p: float = 0.98,
                          generator: torch.Generator | None = None) -> tuple[torch.Tensor, list[list[int]]]:
        """Alpamayo-R1's sampling: every sample gets its own reasoning rollout (sampled with the
        reference's defaults, top_p 0.98 and temperature 0.6, unless greedy) and denoises against
        its own prefix, prompt + its reasoning. The samples run one after the other on the one
        prompt cache: the reasoning K/V of each are dropped before the next. `context` must be
        fresh from prefill. -> normalized actions (S, T, A) and each sample's reasoning token ids."""
        self._check(context)
        if context.reasoning_ids:
            raise PolicyInputError("reason_per_sample needs a context fresh from prefill (no reasoning yet)")
        if not hasattr(self.backend, "rewind"):
            raise PolicyInputError(f"the {self.backend.name} backend cannot reason; use the torch backend")
        samples = self._checked_samples(noise, samples)
        x = self.make_noise(samples, generator) if noise is None else noise
        start = (context.length, context.next_position, context.logits)
        actions, tokens = [], []
        for s in range(samples):
            self.backend.rewind(context, *start)
            context.reasoning_ids = []
            self.reason(context, max_tokens, greedy, temperature, top_p, generator)
            tokens.append(list(context.reasoning_ids))
            actions.append(self.denoise(context, noise=x[s:s + 1], steps=steps))
        return torch.cat(actions), tokens

    # ------------------------------------------------------------------ denoising
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

    def velocity(self, context: Context, x: torch.Tensor, t: float) -> torch.Tensor:
        """The network's velocity at flow time t for actions x (S, T, A), using the cached prefix."""
        self._check(context)
        return self.backend.velocity(context, x, t)

    def denoise(self, context: Context, noise: torch.Tensor | None = None, steps: int | None = None,
                samples: int = 1, generator: torch.Generator | None = None,
                guide: ChunkGuide | None = None) -> torch.Tensor:
        """N Euler steps against the cached prefix -> normalized actions (S, T, A).

        noise (S, T, A) or None (drawn from `generator`); all S samples share one prefix cache.
        guide: real-time chunking; every step's velocity is guided towards guide.leftover (the
        same leftover for every sample). PolicyInputError for a guide that does not fit."""
        self._check(context)
        samples = self._checked_samples(noise, samples)
        if guide is not None and not isinstance(guide, ChunkGuide):
            raise PolicyInputError(f"guide must be a vla_ros.runtime.rtc.ChunkGuide, got {type(guide).__name__}")
        t0 = self._now()
        x = self.make_noise(samples, generator) if noise is None else noise
        if guide is None:
            out = self.backend.denoise(context, x, steps)
        else:
            tensors = guide.tensors((self.num_waypoints, self.action_dim), self.device, self.dtype)
            out = self.backend.denoise(context, x, steps, guide=tensors)
        context.timings.denoise_ms = (self._now() - t0) * 1e3
        return out

    # ------------------------------------------------------------------ whole tick
    def decode(self, actions: torch.Tensor, context: Context) -> DecodedActions:
        """The family's decoding of normalized actions (S, T, A): physical units, and a trajectory
        in the t0 frame for families that drive a path."""
        return self.model.decode_actions(actions.detach().float().cpu(), context.history_xyz, context.history_rot)

    def act(self, stack: Any, *, reasoning: bool = False, max_reasoning_tokens: int | None = None,
            samples: int = 1, steps: int | None = None, noise: torch.Tensor | None = None,
            generator: torch.Generator | None = None, noise_scale: float = 1.0,
            guide: ChunkGuide | None = None, seed: int | None = None) -> PolicyOutput:
        """One tick: prefill, optional reasoning, denoise, decode. Raises on NaN/inf output.
        Without `noise`, the start noise is drawn here from `generator`, scaled by `noise_scale`
        (inference.noise_scale: 0 = deterministic), so a caller in another process (the node)
        sends a number, not a tensor; `seed` (without `generator`): draw it from a CPU generator
        seeded so, as `vla-ros eval` does per tick. guide: real-time chunking (see `denoise`)."""
        start = time.perf_counter()
        if generator is None and seed is not None:
            generator = torch.Generator(device="cpu").manual_seed(int(seed))
        if noise is None and noise_scale != 1.0:
            noise = start_noise(self.num_waypoints, self.action_dim, samples, noise_scale, generator)
        budget = (max_reasoning_tokens or self.max_reasoning_tokens) if reasoning else 0
        ctx = self.prefill(stack, reasoning_budget=budget)
        text = self.reason(ctx, budget) if reasoning else None
        actions = self.denoise(ctx, noise=noise, steps=steps, samples=samples, generator=generator, guide=guide)
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
                            vision_encoded=ctx.vision_encoded, vision_reused=ctx.vision_reused,
                            prompt_tokens_dropped=ctx.prompt_tokens_dropped)
