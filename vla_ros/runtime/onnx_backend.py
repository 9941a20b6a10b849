"""The `onnxruntime` backend: the exported graphs (see `export`) run by ONNX Runtime.

`OnnxRuntimePolicy` is a `Policy` whose vision, prefill and denoise run in ORT sessions; the
cheap host-side parts (image preprocessing, prompt and M-RoPE positions, trajectory integration)
are the torch policy's own code, so both backends see identical inputs and give the same
`PolicyOutput`. Reasoning decode is not exported and stays on the torch backend.

Providers are chosen by availability: TensorRT EP, CUDA EP, CPU on `device="cuda"`; CPU on
`device="cpu"`; a requested provider that this onnxruntime build lacks raises
ProviderUnavailableError. The prefix K/V are bound as OrtValues that stay where prefill left
them (on the GPU with the CUDA EP, host memory otherwise) and are read by every denoising step
through IO binding; the noisy actions ping-pong between two preallocated buffers, so nothing is
allocated or copied per step.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_ros.model import KVExpertVLA, TextTokenizer, load_model
from vla_ros.model.build import parse_dtype
from vla_ros.model.family import ImageEmbedding
from vla_ros.runtime.context import Context, StaleContextError
from vla_ros.runtime.output import Timings
from vla_ros.runtime.export import (DEFAULT_OPSET, CorruptExportError, ExportError, dtype_name, ensure_export,
                                    model_hash, remove_export)
from vla_ros.runtime.policy import Policy

TRT_EP, CUDA_EP, CPU_EP = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


class BackendError(ValueError):
    """The backend cannot run what was asked (missing runtime or provider, unsupported feature)."""


class ProviderUnavailableError(BackendError):
    """A requested ONNX Runtime execution provider is not in this onnxruntime build."""


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # the `export` extra
        raise BackendError("the onnxruntime backend needs the 'onnxruntime' package "
                           "(pip install 'vla_ros[export]', or onnxruntime-gpu for CUDA)") from exc
    return onnxruntime


def select_providers(device: str, requested: Sequence[str] | None = None) -> list[str]:
    """Execution providers in priority order for `device` ('cpu' | 'cuda[:N]')."""
    ort = _ort()
    available = ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ProviderUnavailableError(
                f"execution provider(s) {', '.join(missing)} not available in onnxruntime {ort.__version__} "
                f"(available: {', '.join(available)}); CUDA/TensorRT need the onnxruntime-gpu package")
        return list(requested)
    if device.startswith("cuda"):
        gpu = [p for p in (TRT_EP, CUDA_EP) if p in available]
        if CUDA_EP not in gpu:
            raise ProviderUnavailableError(
                f"device {device!r} needs the CUDAExecutionProvider, which onnxruntime {ort.__version__} here lacks "
                f"(available: {', '.join(available)}); install onnxruntime-gpu")
        return gpu + [CPU_EP]
    return [CPU_EP]


@functools.lru_cache(maxsize=8)
def _vision_tables(model: KVExpertVLA, grid: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Per-image-size inputs of vision.onnx, computed with the vision tower's own helpers:
    pos_index/pos_weight (L, taps) and rope_cos/rope_sin (L, hd_v), for one image of `grid`."""
    from transformers.vision_utils import get_vision_interpolation_indices_and_weights, get_vision_position_ids

    vis = model.vlm.model.visual
    g = torch.tensor([grid], dtype=torch.long)
    with torch.inference_mode():
        idx, w = get_vision_interpolation_indices_and_weights(
            g, num_grid_per_side=vis.num_grid_per_side, mode=vis.interpolation_mode,
            align_corners=vis.interpolation_align_corners, spatial_merge_size=vis.spatial_merge_size)
        pos = get_vision_position_ids(g, vis.spatial_merge_size)
        cos, sin = vis.rotary_pos_emb(torch.empty(1), pos)
    return {"pos_index": idx.numpy().astype(np.int64), "pos_weight": w.float().numpy(),
            "rope_cos": cos.float().numpy(), "rope_sin": sin.float().numpy()}


class OnnxRuntimePolicy(Policy):
    backend = "onnxruntime"

    def __init__(self, model: KVExpertVLA, tokenizer: TextTokenizer, export_dir: str | Path,
                 manifest: dict[str, Any], *, device: str = "cpu", providers: Sequence[str] | None = None,
                 threads: int | None = None, **kwargs: Any) -> None:
        kwargs.pop("cuda_graph", None)
        kwargs.pop("compile", None)
        super().__init__(model, tokenizer, cuda_graph=False, **kwargs)
        ort = _ort()
        self.export_dir = Path(export_dir)
        self.manifest = manifest
        self.providers = select_providers(device, providers)
        on_gpu = self.providers[0] in (TRT_EP, CUDA_EP)
        self.io_device = "cuda" if on_gpu else "cpu"
        self.device_id = int(device.split(":")[1]) if ":" in device else 0
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.log_severity_level = 3
        provider_options = [self._provider_options(p) for p in self.providers]
        self.sessions: dict[str, Any] = {}
        for name in ("embed", "vision", "prefill", "denoise_step"):
            path = self.export_dir / manifest["graphs"][name]["file"]
            try:
                self.sessions[name] = ort.InferenceSession(str(path), opts, providers=self.providers,
                                                           provider_options=provider_options)
            except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
                raise CorruptExportError(f"onnxruntime cannot load '{path}': {exc}") from exc
        self._kv: tuple[Any, Any] | None = None
        self._mask: Any = None
        self._epoch = 0
        self._prefix_len = 0
        self._step_bindings: dict[tuple[int, int, int], tuple[Any, Any, list[Any]]] = {}

    def _provider_options(self, provider: str) -> dict[str, str]:
        if provider == TRT_EP:  # engines cached beside the export, keyed by the EP itself
            cache = self.export_dir / "ort_trt_cache"
            return {"device_id": str(self.device_id), "trt_engine_cache_enable": "True",
                    "trt_engine_cache_path": str(cache), "trt_fp16_enable": str(self.manifest["dtype"] == "fp16")}
        if provider == CUDA_EP:
            return {"device_id": str(self.device_id)}
        return {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, path_or_preset: str | Path, device: str | torch.device = "cpu",
                        dtype: str | torch.dtype | None = None, backend: str = "onnxruntime", *,
                        export_dir: str | Path | None = None, opset: int = DEFAULT_OPSET, rebuild: bool | None = None,
                        providers: Sequence[str] | None = None, threads: int | None = None,
                        **kwargs: Any) -> "OnnxRuntimePolicy":
        """Load the torch model (float32, CPU: the source of the export and of the host-side
        pieces), then use or make its export (see `ensure_export`) and open ORT sessions.
        dtype is the export's (fp32 default; fp16/bf16 for the GPU providers)."""
        dev = str(device)
        dname = dtype_name(dtype if dtype is not None else "fp32")
        if dname != "fp32" and not dev.startswith("cuda"):
            raise BackendError(f"dtype {dname} with onnxruntime needs device='cuda': the CPU provider lacks "
                               "reduced-precision kernels for these graphs")
        select_providers(dev, providers)  # fail before exporting anything
        model, tokenizer = load_model(path_or_preset, device="cpu", dtype=torch.float32)
        mhash = model_hash(model)
        root, manifest = ensure_export(model, path_or_preset, dtype=dname, opset=opset, export_dir=export_dir,
                                       rebuild=rebuild, mhash=mhash)
        try:
            return cls(model, tokenizer, root, manifest, device=dev, providers=providers, threads=threads, **kwargs)
        except CorruptExportError:
            # Files matched their manifest but ORT refused them: rebuild once if the cache is ours.
            if export_dir is not None and not rebuild:
                raise
            remove_export(root)
            root, manifest = ensure_export(model, path_or_preset, dtype=dname, opset=opset, export_dir=export_dir,
                                           rebuild=True, mhash=mhash)
            return cls(model, tokenizer, root, manifest, device=dev, providers=providers, threads=threads, **kwargs)

    # ------------------------------------------------------------------ helpers
    def _value(self, arr: np.ndarray) -> Any:
        """An OrtValue on the IO device (on the CPU it wraps `arr` without a copy)."""
        return _ort().OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), self.io_device, self.device_id)

    def _empty(self, shape: tuple[int, ...], dtype: Any = np.float32) -> Any:
        return _ort().OrtValue.ortvalue_from_shape_and_type(list(shape), dtype, self.io_device, self.device_id)

    def _check(self, context: Context) -> Any:  # type: ignore[override]
        if self._kv is None or context.epoch != self._epoch or context.length != self._prefix_len:
            raise StaleContextError("this context's K/V were overwritten by a later prefill; prefill again")
        return self._kv

    # ------------------------------------------------------------------ vision
    def vision_features(self, pixel_patches: np.ndarray, grid: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """pixel_patches float32 (B, L, Cp) of B images of one grid -> image_embeds (B, L/m^2, D),
        deepstack_embeds (K, B, L/m^2, D)."""
        feeds = {"pixel_patches": np.ascontiguousarray(pixel_patches, dtype=np.float32), **_vision_tables(self.model, grid)}
        tokens, deep = self.sessions["vision"].run(None, feeds)
        return tokens, deep

    def encode_uncached(self, images: np.ndarray) -> list[ImageEmbedding]:
        """The exported vision graph instead of the torch tower (the cache is Policy.encode_images')."""
        pixels, grid = self.model.image_preprocessor(images, device="cpu")
        g = tuple(int(v) for v in grid[0])
        tokens, deep = self.vision_features(pixels.view(len(images), -1, pixels.shape[-1]).numpy(), g)
        return [ImageEmbedding(tokens=torch.from_numpy(tokens[j]),
                               deepstack=tuple(torch.from_numpy(deep[k, j]) for k in range(deep.shape[0])), grid_thw=g)
                for j in range(len(images))]

    # ------------------------------------------------------------------ prefill
    def prefill(self, inputs: Any, reasoning_budget: int | None = None) -> Context:
        """FrameStack | PolicyInputs | mapping -> Context; the prefix K/V stay in OrtValues."""
        inp, images, xyz, rot, keys = self._validated_inputs(inputs)
        v, f, h, w, _ = images.shape
        t0 = time.perf_counter()
        embeds, encoded = self.encode_images(images.reshape(v * f, h, w, 3), keys)
        t1 = time.perf_counter()
        feeds, next_position = self.prefill_inputs(embeds, xyz)
        keys_v, values_v, logits = self.run_prefill(feeds)
        t2 = time.perf_counter()
        length = int(feeds["attention_mask"].shape[1])
        self._kv = (keys_v, values_v)
        self._mask = self._value(np.ones((1, length), dtype=np.int64))
        self._epoch += 1
        self._prefix_len = length
        return Context(epoch=self._epoch, length=length, prompt_length=length, next_position=next_position,
                       logits=torch.from_numpy(logits).float(), history_xyz=torch.from_numpy(xyz),
                       history_rot=torch.from_numpy(rot), t0_ns=inp.t0_ns,
                       timings=Timings(vision_ms=(t1 - t0) * 1e3, prefill_ms=(t2 - t1) * 1e3),
                       vision_encoded=encoded, vision_reused=v * f - encoded)

    def prefill_inputs(self, embeds: list[ImageEmbedding], xyz: np.ndarray) -> tuple[dict[str, np.ndarray], int]:
        """The prompt for these image embeddings and history -> prefill.onnx feeds (image tokens
        scattered into the text embeddings, DeepStack features dense with zeros elsewhere) and
        the rotary position of the first action token."""
        prompt = self.model.prefix_plan(embeds, xyz, self.tokenizer)
        ids = prompt.input_ids
        with torch.inference_mode():
            positions = self.model.prompt_positions(prompt, embeds, torch.device("cpu"))
        emb = self.embed_tokens(ids.numpy().astype(np.int64))
        image = (ids[0] == self.model.vlm_config.image_token_id).numpy()
        emb[0, image] = torch.cat([e.tokens for e in embeds]).numpy().astype(emb.dtype)
        k = len(embeds[0].deepstack)
        deep = np.zeros((k, 1, emb.shape[1], emb.shape[2]), dtype=emb.dtype)
        for i in range(k):
            deep[i, 0, image] = torch.cat([e.deepstack[i] for e in embeds]).numpy()
        feeds = {"inputs_embeds": emb, "deepstack_embeds": deep, "position_ids": positions.numpy().astype(np.int64),
                 "attention_mask": np.ones((1, emb.shape[1]), dtype=np.int64)}
        return feeds, int(positions.max()) + 1

    def embed_tokens(self, input_ids: np.ndarray) -> np.ndarray:
        """input_ids (1, P) int64 -> token embeddings (1, P, D) (a writable host array)."""
        return self.sessions["embed"].run(None, {"input_ids": input_ids})[0]

    def run_prefill(self, feeds: dict[str, np.ndarray]) -> tuple[Any, Any, np.ndarray]:
        """-> prefix_keys, prefix_values as OrtValues on the IO device (NL, KVH, P, hd), logits (1, V)."""
        sess = self.sessions["prefill"]
        io = sess.io_binding()
        for name, arr in feeds.items():
            io.bind_cpu_input(name, np.ascontiguousarray(arr))
        io.bind_output("prefix_keys", self.io_device, self.device_id)
        io.bind_output("prefix_values", self.io_device, self.device_id)
        io.bind_output("logits", "cpu")
        sess.run_with_iobinding(io)
        k, v, logits = io.get_outputs()
        return k, v, logits.numpy()

    def prefix_kv(self) -> tuple[np.ndarray, np.ndarray]:
        """The current prefix K/V as host arrays (NL, KVH, P, hd), for parity checks."""
        if self._kv is None:
            raise StaleContextError("no prefill has run yet")
        return self._kv[0].numpy(), self._kv[1].numpy()

    # ------------------------------------------------------------------ denoising
    def _bindings(self, samples: int, next_position: int) -> tuple[Any, Any, list[Any]]:
        """Two IO bindings of denoise_step.onnx sharing the prefix K/V: even steps read buffer A and
        write B, odd steps the reverse; plus the buffers [A, B, velocity]. Made once per (samples,
        prefill) and reused by every step."""
        key = (samples, self._epoch, next_position)
        if key not in self._step_bindings:
            self._step_bindings = {}  # bindings of older prefills hold stale K/V
            sess = self.sessions["denoise_step"]
            shape = (samples, self.num_waypoints, self.action_dim)
            bufs = [self._empty(shape), self._empty(shape), self._empty(shape)]
            positions = self._value(np.arange(next_position, next_position + self.num_waypoints, dtype=np.int64))
            pair = []
            for src, dst in ((0, 1), (1, 0)):
                io = sess.io_binding()
                io.bind_ortvalue_input("prefix_keys", self._kv[0])
                io.bind_ortvalue_input("prefix_values", self._kv[1])
                io.bind_ortvalue_input("prefix_mask", self._mask)
                io.bind_ortvalue_input("suffix_positions", positions)
                io.bind_ortvalue_input("x", bufs[src])
                io.bind_ortvalue_output("x_next", bufs[dst])
                io.bind_ortvalue_output("velocity", bufs[2])
                pair.append(io)
            self._step_bindings[key] = (pair[0], pair[1], bufs + [positions])
        return self._step_bindings[key]

    def _times(self, steps: int | None) -> tuple[list[Any], list[Any], int]:
        sched, _ = self.schedule(steps)
        ts = [self._value(np.array([t], dtype=np.float32)) for t in sched.times]
        dts = [self._value(np.array([d], dtype=np.float32)) for d in sched.dts]
        return ts, dts, sched.steps

    def denoise(self, context: Context, noise: torch.Tensor | None = None, steps: int | None = None,
                samples: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """N Euler steps (each one denoise_step.onnx run) -> normalized actions (S, T, A) float32."""
        self._check(context)
        samples = self._checked_samples(noise, samples)
        t0 = time.perf_counter()
        x0 = (self.make_noise(samples, generator) if noise is None else noise).float().cpu().numpy()
        even, odd, bufs = self._bindings(samples, context.next_position)
        ts, dts, n = self._times(steps)
        bufs[0].update_inplace(np.ascontiguousarray(x0))
        sess = self.sessions["denoise_step"]
        for i in range(n):
            io = even if i % 2 == 0 else odd
            io.bind_ortvalue_input("t", ts[i])
            io.bind_ortvalue_input("dt", dts[i])
            sess.run_with_iobinding(io)
        out = bufs[n % 2].numpy().copy()
        context.timings.denoise_ms = (time.perf_counter() - t0) * 1e3
        return torch.from_numpy(out)

    def velocity(self, context: Context, x: torch.Tensor, t: float) -> torch.Tensor:
        """The exported step's velocity at flow time t for actions x (S, T, A) -> (S, T, A) float32."""
        kv = self._check(context)
        feeds = {"x": x.float().cpu().numpy(), "t": np.array([t], np.float32), "dt": np.zeros(1, np.float32),
                 "prefix_mask": np.ones((1, context.length), np.int64),
                 "suffix_positions": np.arange(context.next_position, context.next_position + self.num_waypoints)}
        io = self.sessions["denoise_step"].io_binding()
        for name, arr in feeds.items():
            io.bind_cpu_input(name, np.ascontiguousarray(arr))
        io.bind_ortvalue_input("prefix_keys", kv[0])
        io.bind_ortvalue_input("prefix_values", kv[1])
        io.bind_output("velocity", "cpu")
        io.bind_output("x_next", "cpu")
        self.sessions["denoise_step"].run_with_iobinding(io)
        return torch.from_numpy(io.get_outputs()[0].numpy())

    def reason(self, context: Context, max_tokens: int, greedy: bool = True, temperature: float = 1.0,
               top_p: float = 1.0, generator: torch.Generator | None = None) -> str:
        raise BackendError("reasoning decode is not exported: it runs on the torch backend only "
                           "(act(..., reasoning=False) with backend='onnxruntime')")


__all__ = ["BackendError", "ExportError", "OnnxRuntimePolicy", "ProviderUnavailableError", "parse_dtype",
           "select_providers"]
