"""TensorRT engine cache beside an ONNX export: `<export>/engines/<graph>-<key16>.engine` plus a
`.json` sidecar holding the key's fields.

An engine is valid only for the TensorRT version, the GPU (name and compute capability), the
optimization-profile shapes, the precision flags, the model hash and the exact ONNX file it was
built from. All of these go into the key; a change in any of them selects another file name (so
the engine is rebuilt), and a cached file whose sidecar disagrees with its key, or that fails to
deserialize, is rebuilt too. Nothing here imports tensorrt: the backend passes the fields in.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ENGINE_DIR = "engines"


@dataclass(frozen=True)
class EngineKey:
    graph: str  # 'vision' | 'prefill' | 'denoise_step'
    onnx_sha256: str
    model_hash: str
    trt_version: str
    gpu: str  # device name
    compute_capability: str  # 'major.minor'
    precision: str  # export dtype + builder flags, e.g. 'fp16+strongly_typed'
    profile: tuple[tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...]  # (input, min, opt, max)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["profile"] = [[n, list(a), list(b), list(c)] for n, a, b, c in self.profile]
        return d


def engine_path(export_dir: str | Path, key: EngineKey) -> Path:
    return Path(export_dir) / ENGINE_DIR / f"{key.graph}-{key.digest()[:16]}.engine"


def load_or_build(export_dir: str | Path, key: EngineKey, build: Callable[[], bytes],
                  deserialize: Callable[[bytes], Any]) -> tuple[Any, bool]:
    """The deserialized engine for `key` and whether it was (re)built. `build` returns the
    serialized engine; `deserialize` returns an engine or None (a corrupt or foreign file)."""
    path = engine_path(export_dir, key)
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        try:
            same = json.loads(meta.read_text(encoding="utf-8")) == key.as_json()
        except (OSError, ValueError):
            same = False
        if same:
            engine = deserialize(path.read_bytes())
            if engine is not None:
                return engine, False
    blob = build()
    engine = deserialize(blob)
    if engine is None:
        raise RuntimeError(f"TensorRT could not deserialize the engine it just built for '{key.graph}'")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".engine.tmp")
    tmp.write_bytes(blob)
    tmp.replace(path)  # the engine first, then its sidecar: a sidecar always names a complete engine
    meta.write_text(json.dumps(key.as_json(), indent=2) + "\n", encoding="utf-8")
    return engine, True
