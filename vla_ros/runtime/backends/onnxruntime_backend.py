"""The `onnxruntime` backend: the exported graphs (see `export`) run by ONNX Runtime.

`OnnxRuntimeBackend` runs vision, prefill and denoise in ORT sessions behind the one `Policy`,
for both exported families (`kv_expert`, and `joint_mot`: LeRobot pi0 / pi0.5); the cheap
host-side parts (image preprocessing, prompt and positions, state normalization, action decoding)
are the family's own code (`exported_io.py`), so every backend sees identical inputs and gives the
same `PolicyOutput`. Reasoning decode is not exported and stays on the torch backend.

Threads: `threads` intra-op threads (default torch's count) that sleep when idle instead of
spinning: spinning workers of ORT and of torch's OpenMP pool take the cores from each other
(at 2 threads on 2 shared cores the denoise loop took 94 ms spinning vs 69 ms at 1 thread).

Providers are chosen by availability: TensorRT EP, CUDA EP, CPU on `device="cuda"`; CPU on
`device="cpu"`; a requested provider that this onnxruntime build lacks raises
ProviderUnavailableError. The prefix K/V are bound as OrtValues that stay where prefill left
them (on the GPU with the CUDA EP, host memory otherwise) and are read by every denoising step
through IO binding; the noisy actions ping-pong between two preallocated buffers, so nothing is
allocated or copied per step. A real-time-chunking guide (`runtime/rtc.py`) is applied on the
host after each step from the step's x and velocity (the loop is host-side; the guided step
reads both buffers back and writes the guided x_next).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_ros.model import TextTokenizer, load_model
from vla_ros.model.family import ImageEmbedding
from vla_ros.model.flow_matching import flow_schedule
from vla_ros.runtime.backends import exported_io
from vla_ros.runtime.backends.protocol import BackendError, PrefixState
from vla_ros.runtime.export.onnx_export import (ARCHITECTURE_GRAPHS, DEFAULT_OPSET, CorruptExportError, architecture_of,
                                               dtype_name, ensure_export, model_hash, remove_export)
from vla_ros.runtime.rtc import GuideTensors, guided_velocity, step_coefficients

TRT_EP, CUDA_EP, CPU_EP = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


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


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, model: Any, tokenizer: TextTokenizer, export_dir: str | Path, manifest: dict[str, Any], *,
                 device: str = "cpu", providers: Sequence[str] | None = None, threads: int | None = None) -> None:
        self.architecture = architecture_of(model)
        if manifest.get("architecture", "kv_expert") != self.architecture:
            raise CorruptExportError(f"'{export_dir}' holds a {manifest.get('architecture')} export, not {self.architecture}")
        ort = _ort()
        self.model = model
        self.config = model.config
        self.num_waypoints, self.action_dim = model.action_shape
        self.export_dir = Path(export_dir)
        self.manifest = manifest
        self.providers = select_providers(device, providers)
        on_gpu = self.providers[0] in (TRT_EP, CUDA_EP)
        self.io_device = "cuda" if on_gpu else "cpu"
        self.device_id = int(device.split(":")[1]) if ":" in device else 0
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.threads = int(threads or torch.get_num_threads())
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1  # the graphs run sequentially
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see the module docstring
        opts.log_severity_level = 3
        provider_options = [self._provider_options(p) for p in self.providers]
        self.sessions: dict[str, Any] = {}
        for name in ARCHITECTURE_GRAPHS[self.architecture]:
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
    def load(cls, path_or_preset: str | Path, device: str | torch.device = "cpu",
             dtype: str | torch.dtype | None = None, *, export_dir: str | Path | None = None,
             opset: int = DEFAULT_OPSET, rebuild: bool | None = None, providers: Sequence[str] | None = None,
             threads: int | None = None) -> tuple[Any, TextTokenizer, "OnnxRuntimeBackend"]:
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
            return model, tokenizer, cls(model, tokenizer, root, manifest, device=dev, providers=providers,
                                         threads=threads)
        except CorruptExportError:
            # Files matched their manifest but ORT refused them: rebuild once if the cache is ours.
            if export_dir is not None and not rebuild:
                raise
            remove_export(root)
            root, manifest = ensure_export(model, path_or_preset, dtype=dname, opset=opset, export_dir=export_dir,
                                           rebuild=True, mhash=mhash)
            return model, tokenizer, cls(model, tokenizer, root, manifest, device=dev, providers=providers,
                                         threads=threads)

    # ------------------------------------------------------------------ helpers
    def _value(self, arr: np.ndarray) -> Any:
        """An OrtValue on the IO device (on the CPU it wraps `arr` without a copy)."""
        return _ort().OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), self.io_device, self.device_id)

    def _empty(self, shape: tuple[int, ...], dtype: Any = np.float32) -> Any:
        return _ort().OrtValue.ortvalue_from_shape_and_type(list(shape), dtype, self.io_device, self.device_id)

    def synchronize(self) -> None:
        pass  # every session run returns when its outputs are ready

    def is_current(self, context: Any) -> bool:
        return self._kv is not None and context.epoch == self._epoch and context.length == self._prefix_len

    # ------------------------------------------------------------------ vision
    def vision_features(self, pixel_patches: np.ndarray, grid: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """pixel_patches float32 (B, L, Cp) of B images of one grid -> image_embeds (B, L/m^2, D),
        deepstack_embeds (K, B, L/m^2, D)."""
        feeds = {"pixel_patches": np.ascontiguousarray(pixel_patches, dtype=np.float32),
                 **exported_io.vision_tables(self.model, grid)}
        tokens, deep = self.sessions["vision"].run(None, feeds)
        return tokens, deep

    def encode_images(self, images: np.ndarray) -> list[ImageEmbedding]:
        if self.architecture == "joint_mot":
            return exported_io.joint_mot_encode_images(self.model, images, self.sessions["vision"])
        return exported_io.encode_images(self.model, images, self.vision_features)

    # ------------------------------------------------------------------ prefill
    def prefill(self, plan: Any, embeds: list[ImageEmbedding], budget: int) -> PrefixState:
        """The prefix K/V stay in OrtValues on the IO device."""
        if self.architecture == "joint_mot":  # every stream of the prefix, no logits (no text decoder)
            feeds = exported_io.joint_mot_prefill_feeds(self.model, plan, embeds)
            keys_v, values_v, logits = self.run_prefill(feeds)
            length = next_position = int(plan.length)
            if keys_v.shape()[2] != length:
                raise RuntimeError(f"prefill.onnx cached {keys_v.shape()[2]} tokens, the family's plan said {length}")
        else:
            feeds, next_position = exported_io.prefill_feeds(self.model, plan, embeds, self.embed_tokens)
            keys_v, values_v, logits = self.run_prefill(feeds)
            length = int(feeds["attention_mask"].shape[1])
        self._kv = (keys_v, values_v)
        self._mask = self._value(np.ones((1, length), dtype=np.int64))
        self._epoch += 1
        self._prefix_len = length
        return PrefixState(epoch=self._epoch, length=length, next_position=next_position,
                           logits=None if logits is None else torch.from_numpy(logits).float())

    def embed_tokens(self, input_ids: np.ndarray) -> np.ndarray:
        """input_ids (1, P) int64 -> token embeddings (1, P, D) (a writable host array)."""
        return self.sessions["embed"].run(None, {"input_ids": input_ids})[0]

    def run_prefill(self, feeds: dict[str, np.ndarray]) -> tuple[Any, Any, np.ndarray | None]:
        """-> prefix_keys, prefix_values as OrtValues on the IO device (NL, KVH, P, hd), logits
        (1, V) (None for a family without a text decoder)."""
        sess = self.sessions["prefill"]
        io = sess.io_binding()
        for name, arr in feeds.items():
            io.bind_cpu_input(name, np.ascontiguousarray(arr))
        io.bind_output("prefix_keys", self.io_device, self.device_id)
        io.bind_output("prefix_values", self.io_device, self.device_id)
        with_logits = self.architecture == "kv_expert"
        if with_logits:
            io.bind_output("logits", "cpu")
        sess.run_with_iobinding(io)
        out = io.get_outputs()
        return out[0], out[1], out[2].numpy() if with_logits else None

    def prefix_kv(self, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The current prefix K/V as host arrays (NL, KVH, P, hd), for parity checks."""
        if self._kv is None:
            raise BackendError("no prefill has run yet")
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
                if self.architecture == "kv_expert":  # joint_mot caches real tokens only: no mask
                    io.bind_ortvalue_input("prefix_mask", self._mask)
                io.bind_ortvalue_input("suffix_positions", positions)
                io.bind_ortvalue_input("x", bufs[src])
                io.bind_ortvalue_output("x_next", bufs[dst])
                io.bind_ortvalue_output("velocity", bufs[2])
                pair.append(io)
            self._step_bindings[key] = (pair[0], pair[1], bufs + [positions])
        return self._step_bindings[key]

    def _times(self, steps: int | None) -> tuple[list[Any], list[Any], int]:
        sched = flow_schedule(self.config.flow, steps)
        ts = [self._value(np.array([t], dtype=np.float32)) for t in sched.times]
        dts = [self._value(np.array([d], dtype=np.float32)) for d in sched.dts]
        return ts, dts, sched.steps

    def denoise(self, context: Any, x: torch.Tensor, steps: int | None,
                guide: GuideTensors | None = None) -> torch.Tensor:
        """N Euler steps (each one denoise_step.onnx run) -> normalized actions (S, T, A) float32."""
        x0 = x.float().cpu().numpy()
        even, odd, bufs = self._bindings(x0.shape[0], context.next_position)
        ts, dts, n = self._times(steps)
        bufs[0].update_inplace(np.ascontiguousarray(x0))
        sess = self.sessions["denoise_step"]
        if guide is not None:
            sched = flow_schedule(self.config.flow, steps)
            coef = step_coefficients(self.config.flow, sched, guide.max_guidance_weight)
            target, weights = guide.target.float().cpu(), guide.weights.float().cpu()
        for i in range(n):
            io = even if i % 2 == 0 else odd
            io.bind_ortvalue_input("t", ts[i])
            io.bind_ortvalue_input("dt", dts[i])
            sess.run_with_iobinding(io)
            if guide is not None:  # replace the graph's x + dt * v by the guided step
                xi, vi = torch.from_numpy(bufs[i % 2].numpy()), torch.from_numpy(bufs[2].numpy())
                v = guided_velocity(xi, vi, target, weights, coef.scales[i], coef.reaches[i])
                bufs[(i + 1) % 2].update_inplace(np.ascontiguousarray((xi + sched.dts[i] * v).numpy()))
        return torch.from_numpy(bufs[n % 2].numpy().copy())

    def velocity(self, context: Any, x: torch.Tensor, t: float) -> torch.Tensor:
        """The exported step's velocity at flow time t for actions x (S, T, A) -> (S, T, A) float32."""
        kv = self._kv
        feeds = {"x": x.float().cpu().numpy(), "t": np.array([t], np.float32), "dt": np.zeros(1, np.float32),
                 "suffix_positions": np.arange(context.next_position, context.next_position + self.num_waypoints)}
        if self.architecture == "kv_expert":
            feeds["prefix_mask"] = np.ones((1, context.length), np.int64)
        io = self.sessions["denoise_step"].io_binding()
        for name, arr in feeds.items():
            io.bind_cpu_input(name, np.ascontiguousarray(arr))
        io.bind_ortvalue_input("prefix_keys", kv[0])
        io.bind_ortvalue_input("prefix_values", kv[1])
        io.bind_output("velocity", "cpu")
        io.bind_output("x_next", "cpu")
        self.sessions["denoise_step"].run_with_iobinding(io)
        return torch.from_numpy(io.get_outputs()[0].numpy())

    def reason(self, context: Any, max_tokens: int, greedy: bool = True, temperature: float = 1.0,
               top_p: float = 1.0, generator: torch.Generator | None = None) -> list[int]:
        raise BackendError("reasoning decode is not exported: it runs on the torch backend only "
                           "(act(..., reasoning=False) with backend='onnxruntime')")


__all__ = ["OnnxRuntimeBackend", "ProviderUnavailableError", "select_providers"]
