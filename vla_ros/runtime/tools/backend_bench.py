"""`bench runtime --backend onnxruntime|tensorrt`: an exported-graph backend against the torch
runtime, measured alternately in the same run (machine load affects both alike).

Figures (ms, medians over `repeats`): prefill_ms (steady tick: one new frame per camera, the rest
from the vision cache), denoise_ms (`steps` Euler steps for `samples` samples) and step_ms for
the backend; torch_prefill_ms / torch_denoise_ms / torch_step_ms for the torch runtime;
speedup = torch_denoise_ms / denoise_ms, prefill_speedup likewise; max_abs_diff between the two
backends' actions for the same noise.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from vla_ros.runtime.policy import Policy
from vla_ros.runtime.tools.synthetic import synthetic_inputs, synthetic_robot_inputs


def timed_ms(fn: Any, device: torch.device) -> float:
    """Milliseconds `fn()` takes, waiting for the GPU on both ends when `device` is CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) * 1e3


def run_backend_bench(model: str, backend: str, device: str = "cpu", dtype: str | None = None, steps: int = 10,
                      samples: int = 1, repeats: int = 10, threads: int | None = None,
                      image_hw: tuple[int, int] | None = None, **backend_kwargs: Any) -> dict[str, Any]:
    kwargs = dict(backend_kwargs)
    if threads is not None:
        kwargs["threads"] = threads
    tested = Policy.from_pretrained(model, device=device, dtype=dtype, backend=backend, max_samples=max(samples, 1),
                                    **kwargs)
    ref = Policy.from_pretrained(model, device=device, dtype=dtype, max_samples=max(samples, 1))
    dev = ref.device
    cfg = ref.config.image
    h, w = image_hw or ref.image_size_hw
    state_dim = getattr(ref.model, "robot_state_dim", None)  # pi0 / pi0.5: an arm's ticks (state, task)
    if state_dim is None:
        ticks = [synthetic_inputs(i, height=h, width=w, cameras=cfg.num_cameras, frames=cfg.num_frames)
                 for i in range(repeats + 1)]
    else:
        ticks = [synthetic_robot_inputs(i, cameras=cfg.num_cameras, height=h, width=w, state_dim=state_dim)
                 for i in range(repeats + 1)]
    noise = torch.randn(samples, ref.num_waypoints, ref.action_dim, generator=torch.Generator().manual_seed(0))
    # warm-up: sessions/engines, allocators, IO bindings, CUDA graphs
    for pol in (tested, ref):
        ctx = pol.prefill(ticks[0], reasoning_budget=0)
        pol.denoise(ctx, noise=noise.to(pol.device), steps=steps)
    pf, dn, tpf, tdn = [], [], [], []
    for r in range(repeats):
        tick = ticks[r + 1]
        ctx_b: list[Any] = []
        ctx_t: list[Any] = []
        pf.append(timed_ms(lambda: ctx_b.append(tested.prefill(tick, reasoning_budget=0)), dev))
        dn.append(timed_ms(lambda: tested.denoise(ctx_b[0], noise=noise, steps=steps), dev))
        tpf.append(timed_ms(lambda: ctx_t.append(ref.prefill(tick, reasoning_budget=0)), dev))
        tdn.append(timed_ms(lambda: ref.denoise(ctx_t[0], noise=noise.to(dev, ref.dtype), steps=steps), dev))
    out_b = tested.denoise(ctx_b[0], noise=noise, steps=steps)
    out_t = ref.denoise(ctx_t[0], noise=noise.to(dev, ref.dtype), steps=steps)
    med = statistics.median
    return {
        "model": model, "family": ref.config.architecture, "backend": backend, "ref": "torch", "device": str(dev),
        "dtype": str(ref.dtype).replace("torch.", ""), "steps": steps, "samples": samples, "repeats": repeats,
        "providers": list(getattr(tested.backend, "providers", [])), "prompt_tokens": ctx_b[0].prompt_length,
        "threads": torch.get_num_threads(), "backend_threads": getattr(tested.backend, "threads", None),
        "prefill_ms": med(pf), "denoise_ms": med(dn), "step_ms": med(dn) / steps,
        "torch_prefill_ms": med(tpf), "torch_denoise_ms": med(tdn), "torch_step_ms": med(tdn) / steps,
        "speedup": med(tdn) / med(dn), "prefill_speedup": med(tpf) / med(pf),
        "max_abs_diff": float((out_b.float().cpu() - out_t.float().cpu()).abs().max()),
    }


def format_backend_report(r: dict[str, Any]) -> str:
    threads = f"threads {r['threads']}" + (f" (torch), {r['backend_threads']} ({r['backend']})"
                                          if r.get("backend_threads") not in (None, r["threads"]) else "")
    lines = [f"model {r['model']}  backend {r['backend']} vs torch  device {r['device']}  dtype {r['dtype']}  "
             f"steps {r['steps']}  samples {r['samples']}  prompt {r['prompt_tokens']} tokens  {threads}"]
    if r["providers"]:
        lines.append(f"providers: {', '.join(r['providers'])}")
    lines += [f"{'':26}{r['backend']:>12}{'torch':>10}{'torch/ours':>12}",
              f"{'prefill ms (steady tick)':26}{r['prefill_ms']:12.2f}{r['torch_prefill_ms']:10.2f}{r['prefill_speedup']:12.2f}",
              f"{'denoise ms':26}{r['denoise_ms']:12.2f}{r['torch_denoise_ms']:10.2f}{r['speedup']:12.2f}",
              f"{'per step ms':26}{r['step_ms']:12.3f}{r['torch_step_ms']:10.3f}",
              f"max abs diff (actions, {r['backend']} vs torch): {r['max_abs_diff']:.2e}"]
    return "\n".join(lines)
