"""ONNX export of a VLA model: its graphs and a manifest in one directory.

    kv_expert: embed.onnx, vision.onnx, prefill.onnx, denoise_step.onnx   (I/O: `onnx_graphs`)
    joint_mot: vision.onnx, prefill.onnx, denoise_step.onnx               (I/O: `onnx_graphs_joint_mot`)
    <graph>.onnx.data                                          weights, when a graph's initializers
                                                               exceed `external_threshold` bytes
    manifest.json                                              what was exported, from what, how

manifest.json (format 1):
    format, model (name), architecture, model_hash, code_version, graph_code_hash, torch, onnx,
    opset, dtype,
    dims {layers, kv_heads, head_dim, hidden, vocab, expert_layers, expert_hidden, num_waypoints,
          action_dim; kv_expert: deepstack, vision_head_dim, merge_unit; joint_mot: state_dim,
          image_tokens, middle_tokens},
    variant (joint_mot: pi0 | pi05),
    graphs {name: {file, sha256, bytes, external_data: [{file, sha256, bytes}],
                   inputs/outputs: [{name, shape (ints or axis names), dtype}]}}

`model_hash` identifies the weights and config (see `model_hash`); `graph_code_hash` the code that
built the graphs. A cached export is reused only when both match (and dtype and opset), so an
export is never run against another model or an older graph layout.
"""
from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

import vla_ros
from vla_ros.model.build import cast_parameters, parse_dtype
from vla_ros.model import gemma_layer, qwen3_layer, siglip
from vla_ros.model.families import joint_mot
from vla_ros.runtime.export import onnx_graphs, onnx_graphs_joint_mot
from vla_ros.runtime.export.onnx_graphs import DenoiseStepGraph, EmbedGraph, PrefillGraph, VisionGraph
from vla_ros.runtime.export.onnx_graphs_joint_mot import (JointMoTDenoiseStepGraph, JointMoTPrefillGraph,
                                                          JointMoTVisionGraph, register_symbolics)

MANIFEST = "manifest.json"
FORMAT = 1
# The graphs of each exportable family, in export order.
ARCHITECTURE_GRAPHS = {"kv_expert": ("embed", "vision", "prefill", "denoise_step"),
                       "joint_mot": ("vision", "prefill", "denoise_step")}
GRAPHS = ARCHITECTURE_GRAPHS["kv_expert"]
ALL_GRAPHS = ("embed", "vision", "prefill", "denoise_step")
DEFAULT_OPSET = 17
EXPORT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# protobuf cannot serialize a message over 2 GiB: weights beyond this go to a .data file.
EXTERNAL_THRESHOLD = 1_800_000_000
_SAMPLE = 65_536  # elements hashed per large tensor (strided over the whole tensor)


class ExportError(RuntimeError):
    """An export directory is missing, incomplete, corrupt or was made from another model."""


class ManifestMismatchError(ExportError):
    """manifest.json describes another model, dtype, opset or graph-code version."""


class CorruptExportError(ExportError):
    """An exported file is missing, truncated, altered or not a loadable ONNX model."""


def dtype_name(dtype: str | torch.dtype) -> str:
    """'fp32' | 'fp16' | 'bf16' from any spelling parse_dtype accepts."""
    dt = parse_dtype(dtype)
    return {v: k for k, v in EXPORT_DTYPES.items()}[dt]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def architecture_of(model: torch.nn.Module) -> str:
    """The model's family, ExportError unless its graphs can be exported."""
    arch = model.config.architecture
    if arch not in ARCHITECTURE_GRAPHS:
        raise ExportError(f"the ONNX export covers the {' and '.join(ARCHITECTURE_GRAPHS)} families, not {arch!r}")
    return arch


def _statistics(model: torch.nn.Module) -> bytes:
    """The normalization a model applies outside its graphs: kv_expert's action statistics; a
    joint_mot's spec (sizes, variant, normalization) and its state/action statistics."""
    if model.config.architecture != "joint_mot":
        return model.stats.to_json().encode()
    spec = model.spec
    out = [repr({k: v for k, v in vars(spec).items() if not k.endswith("_stats")}).encode()]
    for group in ("state_stats", "action_stats"):
        for key, value in sorted(getattr(spec, group).items()):
            out.append(f"{group}.{key}:".encode() + value.float().cpu().contiguous().numpy().tobytes())
    return b"".join(out)


def model_hash(model: torch.nn.Module) -> str:
    """sha256 over config.json, the statistics (`_statistics`) and every parameter (name, shape,
    values as float32 bytes; tensors over 65,536 elements by a strided sample spanning the whole
    tensor, plus their first and last 4,096 values). Independent of device and thread count; the
    same weights in float32 always give the same hash."""
    h = hashlib.sha256()
    h.update(model.config.to_json().encode())
    h.update(_statistics(model))
    for name, p in sorted(model.state_dict().items()):
        flat = p.detach().reshape(-1)
        h.update(f"{name}:{tuple(p.shape)};".encode())
        if flat.numel() > _SAMPLE:
            step = flat.numel() // _SAMPLE
            flat = torch.cat([flat[:4096], flat[::step], flat[-4096:]])
        h.update(flat.float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def graph_code_hash(architecture: str = "kv_expert") -> str:
    """The graphs' layout is defined by the graph modules, the code they run and this file: a
    change invalidates caches."""
    files = [onnx_graphs, qwen3_layer]
    if architecture == "joint_mot":  # its graphs run the family's own methods and layers
        files += [onnx_graphs_joint_mot, joint_mot, gemma_layer, siglip]
    h = hashlib.sha256()
    for path in [Path(m.__file__) for m in files] + [Path(__file__)]:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def code_version() -> str:
    """vla_ros version, plus the git commit when running from a checkout."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        commit = rev.stdout.strip() if rev.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{vla_ros.__version__}+{commit}" if commit else vla_ros.__version__


def model_dims(model: torch.nn.Module) -> dict[str, int]:
    if model.config.architecture == "joint_mot":
        s = model.spec
        g = s.resolution // s.vision.patch_size
        return {"layers": s.vlm.depth, "kv_heads": s.vlm.num_kv_heads, "head_dim": s.vlm.head_dim,
                "hidden": s.vlm.width, "vocab": s.vocab_size, "expert_layers": s.expert.depth,
                "expert_hidden": s.expert.width, "image_tokens": g * g, "middle_tokens": sum(s.middle_tokens),
                "state_dim": s.state_dim, "num_waypoints": s.chunk_size, "action_dim": s.max_action_dim}
    tc, ec, vc = model.text_config, model.expert_config, model.vlm_config.vision_config
    return {"layers": tc.num_hidden_layers, "kv_heads": tc.num_key_value_heads, "head_dim": tc.head_dim,
            "hidden": tc.hidden_size, "vocab": tc.vocab_size, "expert_layers": ec.num_hidden_layers,
            "expert_hidden": ec.hidden_size, "deepstack": len(vc.deepstack_visual_indexes),
            "vision_head_dim": vc.hidden_size // vc.num_heads, "merge_unit": vc.spatial_merge_size ** 2,
            "num_waypoints": model.config.action_space.num_waypoints,
            "action_dim": model.config.action_space.action_dim}


def _example_inputs(model: torch.nn.Module, dtype: torch.dtype) -> dict[str, tuple[torch.Tensor, ...]]:
    """Tracing inputs with sizes unlike the real ones (prefix 37, 2 samples, 2 images), so a size
    that should be an axis but got baked in as a constant fails the parity tests."""
    if model.config.architecture == "joint_mot":
        return _joint_mot_example_inputs(model, dtype)
    d = model_dims(model)
    vc = model.vlm_config.vision_config
    h, w = model.image_preprocessor.model_input_hw
    n = (h // vc.patch_size) * (w // vc.patch_size)
    cp = 3 * vc.temporal_patch_size * vc.patch_size ** 2
    p, s, t = 37, 2, d["num_waypoints"]
    nkv = (d["layers"], d["kv_heads"], p, d["head_dim"])
    gen = torch.Generator().manual_seed(0)
    pos = torch.arange(p).view(1, 1, p).expand(3, 1, p).contiguous()
    return {
        "embed": (torch.randint(0, d["vocab"], (1, p), generator=gen),),
        "vision": (torch.randn(2, n, cp, generator=gen), torch.randint(0, vc.num_position_embeddings, (n, 4), generator=gen),
                   torch.rand(n, 4, generator=gen), torch.randn(n, d["vision_head_dim"], generator=gen),
                   torch.randn(n, d["vision_head_dim"], generator=gen)),
        "prefill": (torch.randn(1, p, d["hidden"], generator=gen).to(dtype),
                    torch.zeros(d["deepstack"], 1, p, d["hidden"], dtype=dtype), pos,
                    torch.ones(1, p, dtype=torch.long)),
        "denoise_step": (torch.randn(s, t, d["action_dim"], generator=gen), torch.tensor([0.3]), torch.tensor([0.1]),
                         torch.randn(*nkv, generator=gen).to(dtype), torch.randn(*nkv, generator=gen).to(dtype),
                         torch.ones(1, p, dtype=torch.long), torch.arange(100, 100 + t)),
    }


def _joint_mot_example_inputs(model: torch.nn.Module, dtype: torch.dtype) -> dict[str, tuple[torch.Tensor, ...]]:
    """As `_example_inputs`: 3 images, 23 image and 11 language tokens, 2 samples (the fixtures
    feed 2 cameras, 32 image tokens, 2 to 200 language tokens, 1 sample)."""
    d, s = model_dims(model), model.spec
    gen = torch.Generator().manual_seed(0)
    ni, nl = 23, 11
    p = ni + nl + d["middle_tokens"] + (1 if s.variant == "pi0" else 0)
    nkv = (d["layers"], d["kv_heads"], p, d["head_dim"])
    prefill: tuple[torch.Tensor, ...] = (torch.randn(1, ni, d["hidden"], generator=gen).to(dtype),
                                         torch.randint(0, d["vocab"], (nl,), generator=gen))
    if s.variant == "pi0":
        prefill += (torch.randn(s.state_dim, generator=gen),)
    return {
        "vision": (torch.rand(3, 3, s.resolution, s.resolution, generator=gen) * 2 - 1,),
        "prefill": prefill,
        "denoise_step": (torch.randn(2, d["num_waypoints"], d["action_dim"], generator=gen), torch.tensor([0.7]),
                         torch.tensor([-0.1]), torch.randn(*nkv, generator=gen).to(dtype),
                         torch.randn(*nkv, generator=gen).to(dtype), torch.arange(p, p + d["num_waypoints"])),
    }


def _joint_mot_specs(model: torch.nn.Module) -> dict[str, tuple[type, list[str], list[str], dict[str, dict[int, str]]]]:
    pi0 = model.spec.variant == "pi0"
    return {
        "vision": (JointMoTVisionGraph, ["pixels"], ["image_embeds"], {"pixels": {0: "images"}, "image_embeds": {0: "images"}}),
        "prefill": (JointMoTPrefillGraph, ["image_embeds", "input_ids"] + (["state"] if pi0 else []),
                    ["prefix_keys", "prefix_values"],
                    {"image_embeds": {1: "image_tokens"}, "input_ids": {0: "text_tokens"},
                     "prefix_keys": {2: "prefix"}, "prefix_values": {2: "prefix"}}),
        "denoise_step": (JointMoTDenoiseStepGraph, ["x", "t", "dt", "prefix_keys", "prefix_values", "suffix_positions"],
                         ["velocity", "x_next"],
                         {"x": {0: "samples"}, "prefix_keys": {2: "prefix"}, "prefix_values": {2: "prefix"},
                          "velocity": {0: "samples"}, "x_next": {0: "samples"}}),
    }


def _specs(model: torch.nn.Module) -> dict[str, tuple[type, list[str], list[str], dict[str, dict[int, str]]]]:
    return _joint_mot_specs(model) if architecture_of(model) == "joint_mot" else _SPECS


# graph -> (module class, input names, output names, dynamic axes)
_SPECS: dict[str, tuple[type, list[str], list[str], dict[str, dict[int, str]]]] = {
    "embed": (EmbedGraph, ["input_ids"], ["inputs_embeds"],
              {"input_ids": {1: "prefix"}, "inputs_embeds": {1: "prefix"}}),
    "vision": (VisionGraph, ["pixel_patches", "pos_index", "pos_weight", "rope_cos", "rope_sin"],
               ["image_embeds", "deepstack_embeds"],
               {"pixel_patches": {0: "images", 1: "patches"}, "pos_index": {0: "patches"},
                "pos_weight": {0: "patches"}, "rope_cos": {0: "patches"}, "rope_sin": {0: "patches"},
                "image_embeds": {0: "images", 1: "tokens"}, "deepstack_embeds": {1: "images", 2: "tokens"}}),
    "prefill": (PrefillGraph, ["inputs_embeds", "deepstack_embeds", "position_ids", "attention_mask"],
                ["prefix_keys", "prefix_values", "logits"],
                {"inputs_embeds": {1: "prefix"}, "deepstack_embeds": {2: "prefix"}, "position_ids": {2: "prefix"},
                 "attention_mask": {1: "prefix"}, "prefix_keys": {2: "prefix"}, "prefix_values": {2: "prefix"}}),
    "denoise_step": (DenoiseStepGraph, ["x", "t", "dt", "prefix_keys", "prefix_values", "prefix_mask",
                                        "suffix_positions"], ["velocity", "x_next"],
                     {"x": {0: "samples"}, "prefix_keys": {2: "prefix"}, "prefix_values": {2: "prefix"},
                      "prefix_mask": {1: "prefix"}, "velocity": {0: "samples"}, "x_next": {0: "samples"}}),
}

_ONNX_DTYPES = {1: "float32", 7: "int64", 9: "bool", 10: "float16", 16: "bfloat16", 6: "int32"}


def _io(values: Any) -> list[dict[str, Any]]:
    out = []
    for v in values:
        tt = v.type.tensor_type
        shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in tt.shape.dim]
        out.append({"name": v.name, "shape": shape, "dtype": _ONNX_DTYPES.get(tt.elem_type, str(tt.elem_type))})
    return out


def _save_graph(tmp_file: Path, out_dir: Path, name: str, external_threshold: int,
                out_shapes: list[tuple[int, ...]], axes: dict[str, dict[int, str]]) -> dict[str, Any]:
    """Re-save a traced graph into out_dir: one .onnx, plus one .data file when its weights are big.
    Output dims that are not dynamic axes get their static sizes (the tracer's shape inference
    leaves some as generated names). Checks the result with onnx.checker (by path, which also
    covers files over 2 GiB)."""
    import onnx

    proto = onnx.load(str(tmp_file))  # also reads any external data torch wrote beside it
    for out, shape in zip(proto.graph.output, out_shapes):
        dims = out.type.tensor_type.shape.dim
        for i, size in enumerate(shape):
            if i in axes.get(out.name, {}):
                dims[i].dim_param = axes[out.name][i]
            else:
                dims[i].dim_value = int(size)
    weights = sum(len(t.raw_data) for t in proto.graph.initializer)
    final = out_dir / f"{name}.onnx"
    data_name = f"{name}.onnx.data"
    for stale in (final, out_dir / data_name):
        stale.unlink(missing_ok=True)
    external = weights > external_threshold
    if external:
        onnx.save_model(proto, str(final), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
    else:
        onnx.save_model(proto, str(final))
    onnx.checker.check_model(str(final))
    entry: dict[str, Any] = {"file": final.name, "sha256": file_sha256(final), "bytes": final.stat().st_size,
                             "external_data": [], "inputs": _io(proto.graph.input), "outputs": _io(proto.graph.output)}
    if external:
        data = out_dir / data_name
        entry["external_data"].append({"file": data_name, "sha256": file_sha256(data), "bytes": data.stat().st_size})
    return entry


def _unfused(model: torch.nn.Module) -> torch.nn.Module:
    """After a dtype cast, drop the fused q/k/v and gate/up tensors made before it (`fuse_qkv`):
    they would still hold the old dtype; the layers fuse again from the cast weights."""
    for m in model.modules():
        if getattr(m, "_vla_ros_fused", None) is not None:
            m._vla_ros_fused = None
    return model


def export_onnx(model: torch.nn.Module, out_dir: str | Path, *, opset: int = DEFAULT_OPSET, dtype: str = "fp32",
                model_name: str | None = None, external_threshold: int = EXTERNAL_THRESHOLD,
                hash_: str | None = None) -> dict[str, Any]:
    """Export the model's graphs into out_dir (created) and write manifest.json last, so a
    directory with a manifest is a complete export. Returns the manifest."""
    dname = dtype_name(dtype)
    dt = EXPORT_DTYPES[dname]
    arch = architecture_of(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # an interrupted re-export must not look complete
    mhash = hash_ or model_hash(model)
    src = model
    if dt != torch.float32 or next(model.parameters()).device.type != "cpu":
        # Export from a CPU copy in the target dtype; the caller's model stays as it is.
        src = _unfused(cast_parameters(copy.deepcopy(model), "cpu", dt))
    examples = _example_inputs(src, dt)
    specs = _specs(src)
    if arch == "joint_mot":
        register_symbolics()
    graphs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vla_ros_export_") as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        for name in ARCHITECTURE_GRAPHS[arch]:
            cls, inputs, outputs, axes = specs[name]
            module = cls(src).eval()
            tmp_file = Path(tmp) / name / f"{name}.onnx"
            tmp_file.parent.mkdir()
            # TorchScript exporter: it traces transformers' sub-modules reliably at every opset we need.
            torch.onnx.export(module, examples[name], str(tmp_file), input_names=inputs, output_names=outputs,
                              dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)
            outs = module(*examples[name])
            outs = outs if isinstance(outs, tuple) else (outs,)
            graphs[name] = _save_graph(tmp_file, out, name, external_threshold, [tuple(o.shape) for o in outs], axes)
    import onnx

    h, w = model.image_size_hw
    manifest = {
        "format": FORMAT, "model": model_name or model.config.name or "", "architecture": arch, "model_hash": mhash,
        "code_version": code_version(), "graph_code_hash": graph_code_hash(arch), "torch": torch.__version__,
        "onnx": onnx.__version__, "opset": int(opset), "dtype": dname, "dims": model_dims(model),
        "image_input_hw": [h, w], "graphs": graphs,
    }
    if arch == "joint_mot":
        manifest["variant"] = model.spec.variant
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def read_manifest(export_dir: str | Path) -> dict[str, Any]:
    path = Path(export_dir) / MANIFEST
    if not path.is_file():
        raise ExportError(f"'{export_dir}' has no {MANIFEST}: not an export directory (or an interrupted export)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorruptExportError(f"'{path}' is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "graphs" not in manifest:
        raise CorruptExportError(f"'{path}' is not a format-{FORMAT} vla_ros export manifest")
    return manifest


def check_manifest(manifest: dict[str, Any], *, model_hash_: str, dtype: str, opset: int | None = None,
                   where: str = "", architecture: str = "kv_expert") -> None:
    """ManifestMismatchError naming the first field that differs from what the caller runs."""
    checks = [("architecture", architecture), ("model_hash", model_hash_), ("dtype", dtype_name(dtype)),
              ("graph_code_hash", graph_code_hash(architecture))]
    if opset is not None:
        checks.append(("opset", int(opset)))
    for key, want in checks:
        have = manifest.get(key, "kv_expert" if key == "architecture" else None)  # format 1 before joint_mot
        if have != want:
            raise ManifestMismatchError(
                f"export '{where}' has {key} {have!r} but the model being run has {want!r}"
                + (" (exported from another model)" if key == "model_hash" else "") + "; re-export it")


def verify_files(export_dir: str | Path, manifest: dict[str, Any], graphs: tuple[str, ...] | None = None) -> None:
    """Every listed file exists with the recorded size and sha256: CorruptExportError otherwise.
    graphs: those to check (default: every graph of the manifest's architecture)."""
    root = Path(export_dir)
    if graphs is None:
        graphs = ARCHITECTURE_GRAPHS.get(manifest.get("architecture", "kv_expert"), GRAPHS)
    for name in graphs:
        entry = manifest["graphs"].get(name)
        if entry is None:
            raise CorruptExportError(f"'{root / MANIFEST}' lists no '{name}' graph")
        for f in [entry] + list(entry.get("external_data", [])):
            path = root / f["file"]
            if not path.is_file():
                raise CorruptExportError(f"'{path}' is missing")
            if path.stat().st_size != f["bytes"] or file_sha256(path) != f["sha256"]:
                raise CorruptExportError(f"'{path}' does not match its manifest entry (truncated or altered)")


def remove_export(export_dir: str | Path) -> None:
    """Delete an export directory's files (manifest first), keeping anything else in it."""
    root = Path(export_dir)
    (root / MANIFEST).unlink(missing_ok=True)
    for name in ALL_GRAPHS:
        for f in (root / f"{name}.onnx", root / f"{name}.onnx.data"):
            f.unlink(missing_ok=True)
    engines = root / "engines"
    if engines.is_dir():
        shutil.rmtree(engines)


def cache_root() -> Path:
    """$VLA_ROS_CACHE, else ~/.cache/vla_ros."""
    import os

    return Path(os.environ.get("VLA_ROS_CACHE") or Path.home() / ".cache" / "vla_ros")


def default_export_dir(source: str | Path, mhash: str, dtype: str, opset: int) -> Path:
    """Beside a writable checkpoint (`<ckpt>/onnx/<dtype>-opset<N>`), else in the cache keyed by
    the model hash (`<cache>/onnx/<hash16>-<dtype>-opset<N>`). A LeRobot policy directory is
    left as LeRobot wrote it: its export goes to the cache."""
    import os

    from vla_ros.model.lerobot_checkpoint import is_lerobot_policy_dir

    tag = f"{dtype_name(dtype)}-opset{opset}"
    src = Path(str(source))
    if src.is_dir() and os.access(src, os.W_OK) and not is_lerobot_policy_dir(src):
        return src / "onnx" / tag
    return cache_root() / "onnx" / f"{mhash[:16]}-{tag}"


def ensure_export(model: torch.nn.Module, source: str | Path, *, dtype: str = "fp32", opset: int = DEFAULT_OPSET,
                  export_dir: str | Path | None = None, rebuild: bool | None = None,
                  mhash: str | None = None) -> tuple[Path, dict[str, Any]]:
    """An export of `model` that matches it (hash, dtype, opset, graph code) and is intact.

    Without export_dir the cached export is used, and (re-)made when missing, from another
    model or corrupt: the cache is ours to rewrite. With an explicit export_dir a mismatch or a
    corrupt file raises (ManifestMismatchError / CorruptExportError) unless rebuild=True; a
    directory without a manifest is exported into."""
    arch = architecture_of(model)
    mhash = mhash or model_hash(model)
    explicit = export_dir is not None
    root = Path(export_dir) if explicit else default_export_dir(source, mhash, dtype, opset)
    may_rebuild = (not explicit) if rebuild is None else bool(rebuild)
    if (root / MANIFEST).is_file():
        try:
            manifest = read_manifest(root)
            check_manifest(manifest, model_hash_=mhash, dtype=dtype, opset=opset, where=str(root), architecture=arch)
            verify_files(root, manifest)
            return root, manifest
        except ExportError:
            if not may_rebuild:
                raise
            remove_export(root)
    manifest = export_onnx(model, root, opset=opset, dtype=dtype, model_name=str(source), hash_=mhash)
    return root, manifest
