"""The `tensorrt` backend: TensorRT engines built from the ONNX export (UNVERIFIED: written without
access to a GPU or TensorRT; its tests skip visibly where either is missing).

- Engines for vision.onnx, prefill.onnx and denoise_step.onnx are built with one optimization
  profile each (images 1..views*frames, prefix 1..prompt+margin, samples 1..max_samples) and
  cached beside the export by `engine_cache` (rebuilt when the TensorRT version, GPU, shapes,
  precision, ONNX file or model hash change). embed is a table lookup done with the model's own
  embedding on the host.
- Precision: by default the network is built strongly typed, so the types are the export's
  (`--dtype fp16|bf16` exports) and the noisy actions, time and velocity stay float32 as the
  graph declares them; `precision="fp16"|"bf16"` instead builds an fp32 export weakly typed with
  that builder flag (TensorRT chooses per layer).
- Buffers are torch CUDA tensors. The prefix K/V are written by the prefill engine into buffers
  kept per prefix length, so their addresses are stable across ticks; the denoise loop (all
  steps, ping-ponging two action buffers, per-step time/dt rows) is captured once per
  (samples, steps, prefix length) in a CUDA graph and replayed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_ros.model import load_model
from vla_ros.model.family import ImageEmbedding
from vla_ros.model.flow_matching import flow_schedule
from vla_ros.runtime.backends import exported_io
from vla_ros.runtime.backends.protocol import BackendError, PrefixState
from vla_ros.runtime.backends.engine_cache import EngineKey, load_or_build
from vla_ros.runtime.export.onnx_export import DEFAULT_OPSET, CorruptExportError, dtype_name, ensure_export, model_hash
from vla_ros.runtime.inputs import PolicyInputError

PRECISIONS = ("strongly_typed", "fp16", "bf16")
_PREFIX_MARGIN = 128  # profile headroom over the nominal prompt length


def _trt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendError("backend 'tensorrt' needs the 'tensorrt' Python package (NVIDIA TensorRT >= 10) "
                           "and a CUDA GPU; it is not installed here") from exc
    return tensorrt


def _torch_dtype(trt: Any, dt: Any) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int64: torch.int64, trt.int32: torch.int32,
             trt.bool: torch.bool}
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    return table[dt]


class _Engine:
    """One engine + execution context; tensors are bound by address (torch CUDA tensors)."""

    def __init__(self, trt: Any, engine: Any) -> None:
        self.trt = trt
        self.engine = engine
        self.ctx = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: _torch_dtype(trt, engine.get_tensor_dtype(n)) for n in names}

    def bind(self, feeds: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor] | None = None,
             device: torch.device | None = None) -> dict[str, torch.Tensor]:
        """Set input shapes/addresses; allocate outputs not given. Returns the outputs."""
        for name in self.inputs:
            t = feeds[name]
            if not self.ctx.set_input_shape(name, tuple(t.shape)):
                raise PolicyInputError(f"TensorRT engine input {name} rejects shape {tuple(t.shape)} "
                                       "(outside its optimization profile)")
            self.ctx.set_tensor_address(name, t.data_ptr())
        outs = dict(outputs or {})
        for name in self.outputs:
            if name not in outs:
                shape = tuple(self.ctx.get_tensor_shape(name))
                outs[name] = torch.empty(shape, dtype=self.dtypes[name], device=device)
            self.ctx.set_tensor_address(name, outs[name].data_ptr())
        return outs

    def enqueue(self, stream: int) -> None:
        if not self.ctx.execute_async_v3(stream):
            raise BackendError("TensorRT execute_async_v3 failed")


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, model: Any, tokenizer: Any, export_dir: str | Path, manifest: dict[str, Any], *,
                 device: str = "cuda", precision: str = "strongly_typed", workspace_gb: float = 8.0,
                 mhash: str | None = None, max_samples: int = 8) -> None:
        if model.config.architecture != "kv_expert":
            raise BackendError(f"the ONNX export covers the kv_expert family, not {model.config.architecture!r}")
        trt = _trt()
        self.model, self.tokenizer, self.config = model, tokenizer, model.config
        self.num_waypoints, self.action_dim = model.action_shape
        self.max_samples = max_samples
        self.trt = trt
        self.export_dir = Path(export_dir)
        self.manifest = manifest
        self.providers = ["TensorRT"]
        self.cuda = torch.device(device)
        self.io_device, self.device_id = "cuda", self.cuda.index or 0
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        if precision not in PRECISIONS:
            raise BackendError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.workspace = int(workspace_gb * (1 << 30))
        self.model_hash = mhash or model_hash(model)
        self.rebuilt: dict[str, bool] = {}
        self.engines = {name: self._engine(name) for name in ("vision", "prefill", "denoise_step")}
        self._kv = None
        self._kv_buffers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._epoch = 0
        self._prefix_len = 0
        self._graphs: dict[tuple[int, int, int], Any] = {}  # type: ignore[assignment]
        self._step_state: dict[tuple[int, int, int], dict[str, torch.Tensor]] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, path_or_preset: str | Path, device: str | torch.device = "cuda",
             dtype: str | torch.dtype | None = None, *, export_dir: str | Path | None = None,
             opset: int = DEFAULT_OPSET, rebuild: bool | None = None, precision: str = "strongly_typed",
             max_samples: int = 8, workspace_gb: float = 8.0) -> tuple[Any, Any, "TensorRTBackend"]:
        _trt()
        if not torch.cuda.is_available():
            raise BackendError("backend 'tensorrt' needs a CUDA GPU; none is available")
        dev = str(device)
        if not dev.startswith("cuda"):
            raise BackendError(f"backend 'tensorrt' runs on CUDA devices only, got device {dev!r}")
        dname = dtype_name(dtype if dtype is not None else "bf16")
        if precision != "strongly_typed" and dname != "fp32":
            raise BackendError("builder-flag precision needs an fp32 export (dtype fp32)")
        model, tokenizer = load_model(path_or_preset, device="cpu", dtype=torch.float32)
        mhash = model_hash(model)
        root, manifest = ensure_export(model, path_or_preset, dtype=dname, opset=opset, export_dir=export_dir,
                                       rebuild=rebuild, mhash=mhash)
        return model, tokenizer, cls(model, tokenizer, root, manifest, device=dev, precision=precision, mhash=mhash,
                                     max_samples=max_samples, workspace_gb=workspace_gb)

    def _profiles(self) -> dict[str, list[tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]]]]:
        d = self.manifest["dims"]
        vc = self.model.vlm_config.vision_config
        h, w = self.model.image_size_hw
        n = (h // vc.patch_size) * (w // vc.patch_size)
        cp = 3 * vc.temporal_patch_size * vc.patch_size ** 2
        images = self.config.image.num_cameras * self.config.image.num_frames
        prompt = self.model.prompt_builder(self.tokenizer).build(
            images, n // d["merge_unit"], np.zeros(self.config.history.steps * 3, np.int64)).length
        pmax = prompt + _PREFIX_MARGIN
        t, a, hd, nl, kvh, hid, k = (d["num_waypoints"], d["action_dim"], d["head_dim"], d["layers"], d["kv_heads"],
                                     d["hidden"], d["deepstack"])
        s_max = self.max_samples

        def fixed(name: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
            return (name, shape, shape, shape)

        def pref(name: str, pre: tuple[int, ...], post: tuple[int, ...] = ()) -> tuple[Any, ...]:
            return (name, (*pre, 1, *post), (*pre, prompt, *post), (*pre, pmax, *post))

        return {
            "vision": [("pixel_patches", (1, n, cp), (self.config.image.num_cameras, n, cp), (images, n, cp)),
                       fixed("pos_index", (n, 4)), fixed("pos_weight", (n, 4)),
                       fixed("rope_cos", (n, d["vision_head_dim"])), fixed("rope_sin", (n, d["vision_head_dim"]))],
            "prefill": [pref("inputs_embeds", (1,), (hid,)), pref("deepstack_embeds", (k, 1), (hid,)),
                        pref("position_ids", (3, 1)), pref("attention_mask", (1,))],
            "denoise_step": [("x", (1, t, a), (1, t, a), (s_max, t, a)), fixed("t", (1,)), fixed("dt", (1,)),
                             pref("prefix_keys", (nl, kvh), (hd,)), pref("prefix_values", (nl, kvh), (hd,)),
                             pref("prefix_mask", (1,)), fixed("suffix_positions", (t,))],
        }

    def _engine(self, name: str) -> _Engine:
        trt = self.trt
        onnx_path = self.export_dir / self.manifest["graphs"][name]["file"]
        profile = self._profiles()[name]
        props = torch.cuda.get_device_properties(self.cuda)
        key = EngineKey(graph=name, onnx_sha256=self.manifest["graphs"][name]["sha256"], model_hash=self.model_hash,
                        trt_version=trt.__version__, gpu=props.name, compute_capability=f"{props.major}.{props.minor}",
                        precision=f"{self.manifest['dtype']}+{self.precision}",
                        profile=tuple((n, tuple(a), tuple(b), tuple(c)) for n, a, b, c in profile))

        def build() -> bytes:
            builder = trt.Builder(self.logger)
            flags = 0
            if self.precision == "strongly_typed":
                flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
            network = builder.create_network(flags)
            parser = trt.OnnxParser(network, self.logger)
            if not parser.parse_from_file(str(onnx_path)):  # also reads <graph>.onnx.data
                errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise CorruptExportError(f"TensorRT cannot parse '{onnx_path}': {errors}")
            config = builder.create_builder_config()
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace)
            if self.precision == "fp16":
                config.set_flag(trt.BuilderFlag.FP16)
            elif self.precision == "bf16":
                config.set_flag(trt.BuilderFlag.BF16)
            prof = builder.create_optimization_profile()
            for n, mn, opt, mx in profile:
                prof.set_shape(n, mn, opt, mx)
            config.add_optimization_profile(prof)
            blob = builder.build_serialized_network(network, config)
            if blob is None:
                raise BackendError(f"TensorRT failed to build an engine for '{onnx_path}'")
            return bytes(blob)

        engine, rebuilt = load_or_build(self.export_dir, key, build, self.runtime.deserialize_cuda_engine)
        self.rebuilt[name] = rebuilt
        return _Engine(trt, engine)

    # ------------------------------------------------------------------ host/device helpers
    def synchronize(self) -> None:
        torch.cuda.synchronize(self.cuda)

    def is_current(self, context: Any) -> bool:
        return self._kv is not None and context.epoch == self._epoch and context.length == self._prefix_len

    def _feeds(self, engine: _Engine, feeds: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {n: torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.cuda, engine.dtypes[n])
                for n in engine.inputs}

    def _stream(self) -> int:
        return torch.cuda.current_stream(self.cuda).cuda_stream

    def embed_tokens(self, input_ids: np.ndarray) -> np.ndarray:
        emb = self.model.vlm.model.language_model.embed_tokens
        with torch.inference_mode():
            return emb(torch.from_numpy(input_ids)).float().numpy()

    def vision_features(self, pixel_patches: np.ndarray, grid: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        eng = self.engines["vision"]
        feeds = self._feeds(eng, {"pixel_patches": pixel_patches, **exported_io.vision_tables(self.model, grid)})
        outs = eng.bind(feeds, device=self.cuda)
        eng.enqueue(self._stream())
        return outs["image_embeds"].float().cpu().numpy(), outs["deepstack_embeds"].float().cpu().numpy()

    def encode_images(self, images: np.ndarray) -> list[ImageEmbedding]:
        return exported_io.encode_images(self.model, images, self.vision_features)

    def prefill(self, plan: Any, embeds: list[ImageEmbedding], budget: int) -> PrefixState:
        feeds, next_position = exported_io.prefill_feeds(self.model, plan, embeds, self.embed_tokens)
        keys, values, logits = self.run_prefill(feeds)
        length = int(feeds["attention_mask"].shape[1])
        self._kv = (keys, values)
        self._epoch += 1
        self._prefix_len = length
        return PrefixState(epoch=self._epoch, length=length, next_position=next_position,
                           logits=torch.from_numpy(logits).float())

    def run_prefill(self, feeds: dict[str, np.ndarray]) -> tuple[Any, Any, np.ndarray]:
        """K/V are written into per-length buffers (stable addresses for the captured graphs)."""
        eng = self.engines["prefill"]
        p = int(feeds["attention_mask"].shape[1])
        if p not in self._kv_buffers:
            shape = tuple(int(v) for v in (self.manifest["dims"]["layers"], self.manifest["dims"]["kv_heads"], p,
                                           self.manifest["dims"]["head_dim"]))
            dt = eng.dtypes["prefix_keys"]
            self._kv_buffers[p] = (torch.zeros(shape, dtype=dt, device=self.cuda),
                                   torch.zeros(shape, dtype=dt, device=self.cuda))
        k, v = self._kv_buffers[p]
        outs = eng.bind(self._feeds(eng, feeds), {"prefix_keys": k, "prefix_values": v}, device=self.cuda)
        eng.enqueue(self._stream())
        return k, v, outs["logits"].float().cpu().numpy()

    def prefix_kv(self, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self._kv is None:
            raise BackendError("no prefill has run yet")
        return self._kv[0].float().cpu().numpy(), self._kv[1].float().cpu().numpy()

    # ------------------------------------------------------------------ denoising
    def _state(self, samples: int, steps: int, p: int) -> dict[str, torch.Tensor]:
        key = (samples, steps, p)
        if key not in self._step_state:
            shape = (samples, self.num_waypoints, self.action_dim)
            sched = flow_schedule(self.config.flow, steps)
            # one 256-byte row per step so every per-step address is aligned
            t_rows = torch.zeros(steps, 64, dtype=torch.float32, device=self.cuda)
            dt_rows = torch.zeros(steps, 64, dtype=torch.float32, device=self.cuda)
            t_rows[:, 0] = torch.tensor(sched.times, dtype=torch.float32)
            dt_rows[:, 0] = torch.tensor(sched.dts, dtype=torch.float32)
            self._step_state[key] = {
                "a": torch.zeros(shape, device=self.cuda), "b": torch.zeros(shape, device=self.cuda),
                "v": torch.zeros(shape, device=self.cuda), "t": t_rows, "dt": dt_rows,
                "mask": torch.ones(1, p, dtype=torch.int64, device=self.cuda),
                "pos": torch.zeros(self.num_waypoints, dtype=torch.int64, device=self.cuda)}
        return self._step_state[key]

    def _enqueue_loop(self, st: dict[str, torch.Tensor], steps: int, p: int) -> None:
        eng = self.engines["denoise_step"]
        k, v = self._kv_buffers[p]
        bufs = (st["a"], st["b"])
        stream = self._stream()
        for i in range(steps):
            feeds = {"x": bufs[i % 2], "t": st["t"][i, :1], "dt": st["dt"][i, :1], "prefix_keys": k,
                     "prefix_values": v, "prefix_mask": st["mask"], "suffix_positions": st["pos"]}
            eng.bind(feeds, {"x_next": bufs[(i + 1) % 2], "velocity": st["v"]}, device=self.cuda)
            eng.enqueue(stream)

    def denoise(self, context: Any, x: torch.Tensor, steps: int | None, guide: Any = None) -> torch.Tensor:
        """All steps replayed from one CUDA graph (captured per samples/steps/prefix length)."""
        if guide is not None:  # the steps are enqueued back to back in one graph: no host-side step to guide
            raise BackendError("real-time chunking (a denoise guide) is not implemented on the tensorrt backend; "
                               "use the torch or onnxruntime backend")
        samples = x.shape[0]
        n = flow_schedule(self.config.flow, steps).steps
        p = context.length
        st = self._state(samples, n, p)
        x0 = x
        st["a"].copy_(x0.to(self.cuda, torch.float32))
        st["pos"].copy_(torch.arange(context.next_position, context.next_position + self.num_waypoints))
        key = (samples, n, p)
        if key not in self._graphs:
            side = torch.cuda.Stream(self.cuda)
            side.wait_stream(torch.cuda.current_stream(self.cuda))
            with torch.cuda.stream(side):
                self._enqueue_loop(st, n, p)  # TensorRT needs one enqueue per shape before capture
            torch.cuda.current_stream(self.cuda).wait_stream(side)
            st["a"].copy_(x0.to(self.cuda, torch.float32))
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=side):
                self._enqueue_loop(st, n, p)
            self._graphs[key] = graph
        self._graphs[key].replay()
        return (st["a"] if n % 2 == 0 else st["b"]).float().cpu()

    def velocity(self, context: Any, x: torch.Tensor, t: float) -> torch.Tensor:
        eng = self.engines["denoise_step"]
        k, v = self._kv_buffers[context.length]
        feeds = {"x": x.to(self.cuda, torch.float32).contiguous(), "t": torch.tensor([t], device=self.cuda),
                 "dt": torch.zeros(1, device=self.cuda), "prefix_keys": k, "prefix_values": v,
                 "prefix_mask": torch.ones(1, context.length, dtype=torch.int64, device=self.cuda),
                 "suffix_positions": torch.arange(context.next_position, context.next_position + self.num_waypoints,
                                                  device=self.cuda)}
        outs = eng.bind(feeds, device=self.cuda)
        eng.enqueue(self._stream())
        return outs["velocity"].float().cpu()

    def reason(self, context: Any, max_tokens: int, greedy: bool = True, temperature: float = 1.0,
               top_p: float = 1.0, generator: torch.Generator | None = None) -> list[int]:
        raise BackendError("reasoning decode is not exported: it runs on the torch backend only "
                           "(act(..., reasoning=False) with backend='tensorrt')")
