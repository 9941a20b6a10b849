"""`bench runtime`: the Policy against the straightforward transformers path, in the same run.

Figures (milliseconds, medians over `repeats`; the two paths are measured alternately so that
machine load affects both alike):

- prefill_ms: one tick's prefill as it runs on a vehicle: vision (only the newest frame of each
  camera is encoded, the rest come from the cache) + the LM over the prompt into the buffers;
  prefill_cold_ms: the same with nothing cached (all images encoded);
  baseline_prefill_ms: one transformers forward over the processed prompt with every image
  encoded, K/V in a DynamicCache (the released code's path);
- denoise_ms / baseline_denoise_ms: `steps` Euler steps for `samples` samples (baseline: the
  transformers expert on a DynamicCache + crop per step, cache repeated per sample);
- reasoning_ms_per_token / baseline_reasoning_ms_per_token: greedy decoding on our buffers vs a
  transformers forward per token on a DynamicCache;
- step FLOPs, achieved GFLOP/s of the denoise loop and the prefill, beside a large matmul's.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from vla_ros.model.families.kv_expert import CACHE_ARG
from vla_ros.model.flow_matching import flow_schedule
from vla_ros.runtime.tools.baseline import baseline_denoise, baseline_inputs, baseline_prefill
from vla_ros.runtime.policy import Policy
from vla_ros.runtime.tools.synthetic import synthetic_inputs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


def matmul_gflops(device: torch.device, dtype: torch.dtype) -> float:
    """Achieved GFLOP/s of a large square matmul: the machine's practical compute ceiling."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    reps = 20 if device.type == "cuda" else 5
    ms = statistics.median(_time(lambda: a @ b, device) for _ in range(reps))
    return 2 * n ** 3 / (ms * 1e-3) / 1e9


def prefill_flops(policy: Policy, prompt_len: int, patches_per_image: int, images_encoded: int) -> int:
    """Multiply-adds x 2 of one prefill: text layers over the prompt (causal attention), lm_head
    for the last token, the vision tower over the encoded images (attention within each image)."""
    tc, vc = policy.model.text_config, policy.model.vlm_config.vision_config
    lm = policy.model.vlm.model.language_model
    text_w = sum(p.numel() for n, p in lm.layers.named_parameters() if p.dim() == 2)
    attn = tc.num_hidden_layers * tc.num_attention_heads * tc.head_dim * prompt_len * (prompt_len + 1)  # q.K + p.V, causal
    vis = policy.model.vlm.model.visual
    vis_w = sum(p.numel() for n, p in vis.blocks.named_parameters() if p.dim() == 2)
    merge_w = sum(p.numel() for p in vis.merger.parameters() if p.dim() == 2) + sum(
        p.numel() for p in vis.deepstack_merger_list.parameters() if p.dim() == 2)
    patches = patches_per_image * images_encoded
    vis_attn = vc.depth * 2 * vc.hidden_size * patches_per_image * patches
    embed = vis.patch_embed.proj.weight.numel() * patches
    macs = (text_w * prompt_len + attn + tc.hidden_size * tc.vocab_size + vis_w * patches + vis_attn + embed
            + merge_w * patches // vc.spatial_merge_size ** 2)
    return 2 * macs


def run_bench(model: str, device: str = "cpu", dtype: str | None = None, steps: int = 10, samples: int = 1,
              repeats: int = 10, reasoning_tokens: int = 16, cuda_graph: bool | None = None,
              image_hw: tuple[int, int] | None = None) -> dict[str, Any]:
    policy = Policy.from_pretrained(model, device=device, dtype=dtype, cuda_graph=cuda_graph,
                                    max_samples=max(samples, 1), max_reasoning_tokens=reasoning_tokens)
    dev = policy.device
    cfg = policy.config.image
    # Frames arrive at the model's input size, as the sensing layer decodes them (no resize here).
    h, w = image_hw or policy.image_size_hw
    ticks = [synthetic_inputs(i, height=h, width=w, cameras=cfg.num_cameras, frames=cfg.num_frames)
             for i in range(repeats + 2)]
    sched = flow_schedule(policy.config.flow, steps)
    gen = torch.Generator(device="cpu").manual_seed(0)
    noise = torch.randn(samples, policy.num_waypoints, policy.action_dim, generator=gen).to(dev, policy.dtype)
    noise1 = noise[:1]

    # warm-up (lazy init, allocator, CUDA graph capture) -----------------------------------
    ctx = policy.prefill(ticks[0], reasoning_budget=0)
    policy.denoise(ctx, noise=noise, steps=steps)
    policy.denoise(ctx, noise=noise1, steps=steps)
    b_inputs = baseline_inputs(policy.model, policy.model.prompt_builder(policy.tokenizer), ticks[0].images, ticks[0].history_xyz, dev, policy.dtype,
                           camera_ids=ticks[0].camera_ids)
    base = baseline_prefill(policy.model, b_inputs)
    baseline_denoise(policy.model, base, noise, sched)

    ours_prefill, cold_prefill, base_prefill, vision = [], [], [], []
    ours_dn, ours_dn1, base_dn = [], [], []
    for r in range(repeats):
        tick = ticks[r + 1]  # a new frame per camera: the vision cache serves the other frames
        t0 = time.perf_counter()
        ctx = policy.prefill(tick, reasoning_budget=0)
        ours_prefill.append((time.perf_counter() - t0) * 1e3)
        vision.append(ctx.timings.vision_ms)
        ours_dn.append(_time(lambda: policy.denoise(ctx, noise=noise, steps=steps), dev))
        if samples > 1:
            ours_dn1.append(_time(lambda: policy.denoise(ctx, noise=noise1, steps=steps), dev))
        b_in = baseline_inputs(policy.model, policy.model.prompt_builder(policy.tokenizer), tick.images, tick.history_xyz, dev, policy.dtype,
                           camera_ids=tick.camera_ids)
        t0 = time.perf_counter()
        base = baseline_prefill(policy.model, b_in)
        _sync(dev)
        base_prefill.append((time.perf_counter() - t0) * 1e3)
        base_dn.append(_time(lambda: baseline_denoise(policy.model, base, noise, sched), dev))
        if r < 3:  # cold prefill: nothing cached
            policy.vision_cache.clear()
            t0 = time.perf_counter()
            policy.prefill(tick, reasoning_budget=0)
            cold_prefill.append((time.perf_counter() - t0) * 1e3)

    # equivalence on the last tick ---------------------------------------------------------
    ctx = policy.prefill(ticks[repeats], reasoning_budget=reasoning_tokens)
    ours = policy.denoise(ctx, noise=noise, steps=steps)
    b_in = baseline_inputs(policy.model, policy.model.prompt_builder(policy.tokenizer), ticks[repeats].images, ticks[repeats].history_xyz, dev, policy.dtype,
                           camera_ids=ticks[repeats].camera_ids)
    base = baseline_prefill(policy.model, b_in)
    ref = baseline_denoise(policy.model, base, noise, sched)
    max_abs_diff = float((ours.float() - ref.float()).abs().max())

    # reasoning decode: warm both paths, then alternate (medians) ------------------------------
    reason_runs, base_reason_runs, n_reason = [], [], 1
    for r in range(1 + min(repeats, 5)):
        rctx = policy.prefill(ticks[repeats], reasoning_budget=reasoning_tokens)
        ms = _time(lambda: policy.reason(rctx, reasoning_tokens), dev)
        n_reason = max(len(rctx.reasoning_ids), 1)
        base_ms = _time(lambda: _baseline_decode(policy, base, n_reason), dev)
        if r > 0:  # the first round is the warm-up
            reason_runs.append(ms / n_reason)
            base_reason_runs.append(base_ms / n_reason)

    # FLOPs --------------------------------------------------------------------------------
    med = statistics.median
    t = policy.num_waypoints
    kv_len = ctx.prompt_length + t
    step_flops = policy.backend.kernel.flops_per_token(kv_len) * samples * t
    denoise_ms = med(ours_dn)
    grid = policy.model.image_preprocessor.target_size(h, w)
    patches = (grid[0] // cfg.patch_size) * (grid[1] // cfg.patch_size)
    pf_flops = prefill_flops(policy, ctx.prompt_length, patches, cfg.num_cameras)
    pf_cold_flops = prefill_flops(policy, ctx.prompt_length, patches, cfg.num_cameras * cfg.num_frames)
    peak = matmul_gflops(dev, policy.dtype)
    result: dict[str, Any] = {
        "model": model, "device": str(dev), "dtype": str(policy.dtype).replace("torch.", ""),
        "steps": steps, "samples": samples, "repeats": repeats, "cuda_graph": policy.backend.use_cuda_graph,
        "prompt_tokens": ctx.prompt_length, "image_hw": [h, w], "model_image_hw": list(grid),
        "prefill_ms": med(ours_prefill), "prefill_cold_ms": med(cold_prefill), "vision_ms": med(vision),
        "baseline_prefill_ms": med(base_prefill),
        "denoise_ms": denoise_ms, "baseline_denoise_ms": med(base_dn),
        "step_ms": denoise_ms / steps, "baseline_step_ms": med(base_dn) / steps,
        "speedup": med(base_dn) / denoise_ms, "prefill_speedup": med(base_prefill) / med(ours_prefill),
        "max_abs_diff": max_abs_diff,
        "reasoning_ms_per_token": med(reason_runs), "baseline_reasoning_ms_per_token": med(base_reason_runs),
        "reasoning_tokens": n_reason,
        "step_flops": step_flops, "denoise_gflops": step_flops * steps / (denoise_ms * 1e-3) / 1e9,
        "prefill_flops": pf_flops, "prefill_gflops": pf_flops / (med(ours_prefill) * 1e-3) / 1e9,
        "prefill_cold_gflops": pf_cold_flops / (med(cold_prefill) * 1e-3) / 1e9,
        "matmul_gflops": peak,
    }
    if samples > 1:
        result["denoise_1_sample_ms"] = med(ours_dn1)
        result["samples_cost_ratio"] = denoise_ms / med(ours_dn1)
    if dev.type == "cuda" and policy.backend.use_cuda_graph:  # the same loop without the graph
        eager = Policy(policy.model, policy.tokenizer, cuda_graph=False, max_samples=max(samples, 1))
        ectx = eager.prefill(ticks[0], reasoning_budget=0)
        eager.denoise(ectx, noise=noise, steps=steps)
        result["denoise_eager_ms"] = med(_time(lambda: eager.denoise(ectx, noise=noise, steps=steps), dev) for _ in range(repeats))
        result["graph_speedup"] = result["denoise_eager_ms"] / denoise_ms
    return result


@torch.inference_mode()
def _baseline_decode(policy: Policy, base: Any, n: int) -> None:
    """n greedy tokens with a transformers forward per token on the DynamicCache (then cropped)."""
    tok = torch.tensor([[policy.tokenizer.ids.reasoning_start]], device=policy.device)
    for i in range(n):
        pos = torch.full((3, 1, 1), base.next_position + i, device=policy.device)
        out = policy.model.vlm(input_ids=tok, position_ids=pos, **{CACHE_ARG: base.cache}, use_cache=True)
        tok = out.logits[:, -1:].argmax(-1)
    base.cache.crop(-n)


def format_report(r: dict[str, Any]) -> str:
    lines = [
        f"model {r['model']}  device {r['device']}  dtype {r['dtype']}  steps {r['steps']}  samples {r['samples']}  "
        f"prompt {r['prompt_tokens']} tokens  cuda_graph {r['cuda_graph']}",
        f"{'':28}{'ours':>10}{'baseline':>10}{'ratio':>8}",
        f"{'prefill ms (steady tick)':28}{r['prefill_ms']:10.2f}{r['baseline_prefill_ms']:10.2f}{r['prefill_speedup']:8.2f}",
        f"{'prefill ms (cold)':28}{r['prefill_cold_ms']:10.2f}",
        f"{'denoise ms':28}{r['denoise_ms']:10.2f}{r['baseline_denoise_ms']:10.2f}{r['speedup']:8.2f}",
        f"{'per step ms':28}{r['step_ms']:10.3f}{r['baseline_step_ms']:10.3f}",
        f"{'reasoning ms/token':28}{r['reasoning_ms_per_token']:10.2f}{r['baseline_reasoning_ms_per_token']:10.2f}"
        f"{r['baseline_reasoning_ms_per_token'] / r['reasoning_ms_per_token']:8.2f}",
        f"max abs diff (denoise vs baseline): {r['max_abs_diff']:.2e}",
        f"step {r['step_flops'] / 1e9:.3f} GFLOP; denoise {r['denoise_gflops']:.1f} GFLOP/s; prefill "
        f"{r['prefill_gflops']:.1f} GFLOP/s (cold {r['prefill_cold_gflops']:.1f}); large matmul {r['matmul_gflops']:.1f} GFLOP/s",
    ]
    if "samples_cost_ratio" in r:
        lines.append(f"{r['samples']} samples cost {r['samples_cost_ratio']:.2f}x one sample ({r['denoise_1_sample_ms']:.2f} ms)")
    if "denoise_eager_ms" in r:
        lines.append(f"denoise without CUDA graph {r['denoise_eager_ms']:.2f} ms: graph speedup {r['graph_speedup']:.2f}x")
    return "\n".join(lines)
