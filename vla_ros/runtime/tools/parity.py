"""Parity between a backend and a reference (the torch runtime in float32) on the same tick.

Four stages are compared, each by max abs difference, RMSE and the index of the worst element:

    vision      image_embeds and deepstack features of all images of the tick, (N, tokens, D)
    prefix_kv   every layer's prefix K and V after prefill, (2, layers, kv_heads, P, head_dim)
    velocity    one denoising step's velocity at the first flow time, (S, T, A)
    trajectory  the final xyz of `act` with the same noise, (S, T, 3) metres; for a family fed a
                robot state (joint_mot: pi0 / pi0.5) instead
    actions     the unnormalized action chunk of `act` with the same noise, (S, T, action_dim),
                on a synthetic arm tick (one frame per camera, a state, a task)

Tolerances (absolute, on values of order 1; the trajectory in metres over 6.4 s):

    fp32: 1e-4 for features, K/V and velocity, 1e-3 m for the trajectory. Only the summation
          order differs (fused/grouped kernels), which moves float32 results by ~1e-6.
    fp16: 5e-2 / 5e-2 / 5e-2 / 0.25 m (torch fp16 vs fp32 on random:tiny, CPU: 2.2e-4 / 5.4e-3 /
          1.5e-2 / 2.9e-3 m). Weights and activations are rounded to 11 significant bits
          (~5e-4 relative) in every layer; the errors add up through the layers and the 10
          Euler steps (the actions and time stay float32, which keeps the integration itself exact).
    bf16: 2e-1 / 2e-1 / 2.5e-1 / 0.5 m. Only 8 significant bits (~4e-3 relative) per rounding
          (torch bf16 vs fp32 on random:tiny, CPU: 1.8e-3 / 4.2e-2 / 9.7e-2 / 0.10 m).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"vision": 1e-4, "prefix_kv": 1e-4, "velocity": 1e-4, "trajectory": 1e-3},
    "fp16": {"vision": 5e-2, "prefix_kv": 5e-2, "velocity": 5e-2, "trajectory": 0.25},
    "bf16": {"vision": 2e-1, "prefix_kv": 2e-1, "velocity": 2.5e-1, "trajectory": 0.5},
}
STAGES = ("vision", "prefix_kv", "velocity", "trajectory")
ROBOT_STAGES = ("vision", "prefix_kv", "velocity", "actions")
# The action chunk in the robot's units (normalized values of order 1, times its statistics): fp32
# as the velocity; fp16 / bf16 as the velocity's, unmeasured (no GPU run of an ONNX Runtime arm model yet).
ACTION_TOLERANCES = {"fp32": 1e-4, "fp16": 5e-2, "bf16": 2.5e-1}


def compare(a: Any, b: Any) -> dict[str, Any]:
    """Two arrays of one shape -> {max_abs, rmse, worst_index}. NaN anywhere counts as infinite."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    d = np.abs(x - y)
    if not np.all(np.isfinite(d)):
        bad = np.argwhere(~np.isfinite(d))[0]
        return {"max_abs": math.inf, "rmse": math.inf, "worst_index": [int(i) for i in bad]}
    worst = np.unravel_index(int(np.argmax(d)), d.shape)
    return {"max_abs": float(d.max()), "rmse": float(np.sqrt(np.mean(d ** 2))), "worst_index": [int(i) for i in worst]}


def _vision(policy: Any, images: np.ndarray) -> np.ndarray:
    embeds, _ = policy.encode_images(images, None)
    tokens = torch.stack([e.tokens.float().cpu() for e in embeds])
    if not embeds[0].deepstack:  # a family without DeepStack features (joint_mot)
        return tokens[:, None].numpy()
    deep = torch.stack([torch.stack([d.float().cpu() for d in e.deepstack]) for e in embeds])
    return torch.cat([tokens[:, None], deep], dim=1).numpy()  # (N, 1 + K, tokens, D)


def _prefix_kv(policy: Any, length: int) -> np.ndarray:
    k, v = policy.backend.prefix_kv(length)
    return np.stack([k, v])


def run_parity(model: str, backend: str = "onnxruntime", ref: str = "torch", *, device: str = "cpu",
               dtype: str = "fp32", samples: int = 1, steps: int | None = None, seed: int = 0,
               threads: int | None = None, **backend_kwargs: Any) -> dict[str, Any]:
    """Run the same synthetic tick through `backend` and `ref`; returns the JSON-able report."""
    from vla_ros.runtime.export.onnx_export import dtype_name
    from vla_ros.model.flow_matching import flow_schedule
    from vla_ros.runtime.policy import Policy
    from vla_ros.runtime.tools.synthetic import synthetic_inputs, synthetic_robot_inputs

    if ref != "torch":
        raise ValueError(f"reference backend must be 'torch' (float32), got {ref!r}")
    dname = dtype_name(dtype)
    ref_device = device if device.startswith("cuda") else "cpu"
    reference = Policy.from_pretrained(model, device=ref_device, dtype="float32", max_samples=max(samples, 1))
    kwargs = dict(backend_kwargs)
    if threads is not None and backend != "torch":
        kwargs["threads"] = threads
    tested = Policy.from_pretrained(model, device=device, dtype=dname, backend=backend, max_samples=max(samples, 1),
                                    **kwargs)
    h, w = reference.image_size_hw
    state_dim = getattr(reference.model, "robot_state_dim", None)
    if state_dim is None:
        tick = synthetic_inputs(0, speed=7.0, yaw_rate=0.05, height=h, width=w, seed=seed)
    else:
        tick = synthetic_robot_inputs(0, cameras=reference.config.image.num_cameras, height=h, width=w,
                                      state_dim=state_dim, seed=seed)
    images = np.asarray(tick.images).reshape(-1, h, w, 3)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(samples, reference.num_waypoints, reference.action_dim, generator=gen)
    stages: dict[str, dict[str, Any]] = {}
    with torch.inference_mode():
        stages["vision"] = compare(_vision(tested, images), _vision(reference, images))
        cr, ct = reference.prefill(tick), tested.prefill(tick)
        if (cr.length, cr.next_position) != (ct.length, ct.next_position):
            raise RuntimeError(f"prompt layout differs: length/position {ct.length}/{ct.next_position} vs "
                               f"{cr.length}/{cr.next_position}")
        stages["prefix_kv"] = compare(_prefix_kv(tested, ct.length), _prefix_kv(reference, cr.length))
        t_first = flow_schedule(reference.config.flow, steps).times[0]
        stages["velocity"] = compare(tested.velocity(ct, noise, t_first).float().cpu(),
                                     reference.velocity(cr, noise, t_first).float().cpu())
        out_t = tested.act(tick, noise=noise, steps=steps)
        out_r = reference.act(tick, noise=noise, steps=steps)
        if state_dim is None:
            stages["trajectory"] = compare(out_t.xyz, out_r.xyz)
        else:
            stages["actions"] = compare(out_t.actions, out_r.actions)
    names = STAGES if state_dim is None else ROBOT_STAGES
    tol = {s: TOLERANCES[dname][s] if s in TOLERANCES[dname] else ACTION_TOLERANCES[dname] for s in names}
    failures = [s for s in names if not stages[s]["max_abs"] <= tol[s]]
    report: dict[str, Any] = {"model": str(model), "backend": backend, "ref": ref, "device": device, "dtype": dname,
                              "samples": samples, "steps": flow_schedule(reference.config.flow, steps).steps, "prefix_len": cr.length,
                              "providers": list(getattr(tested.backend, "providers", [])), "stages": list(names),
                              "tolerances": tol}
    for s in names:
        report[f"{s}_max_abs"] = stages[s]["max_abs"]
        report[f"{s}_rmse"] = stages[s]["rmse"]
        report[f"{s}_worst_index"] = stages[s]["worst_index"]
    report["failures"] = failures
    report["passed"] = not failures
    return report


def format_report(r: dict[str, Any]) -> str:
    lines = [f"parity {r['backend']} vs {r['ref']} (float32) on {r['model']}: {r['dtype']}, {r['device']}, "
             f"prefix {r['prefix_len']} tokens, {r['samples']} sample(s), {r['steps']} steps"]
    if r.get("providers"):
        lines.append(f"  providers: {', '.join(r['providers'])}")
    lines.append(f"  {'stage':<11} {'max abs':>11} {'rmse':>11} {'tolerance':>10}  worst index")
    for s in r.get("stages", STAGES):
        ok = "ok" if s not in r["failures"] else "FAIL"
        lines.append(f"  {s:<11} {r[f'{s}_max_abs']:11.3e} {r[f'{s}_rmse']:11.3e} {r['tolerances'][s]:10.1e}  "
                     f"{r[f'{s}_worst_index']}  {ok}")
    lines.append("PASSED" if r["passed"] else f"FAILED: {', '.join(r['failures'])} above tolerance")
    return "\n".join(lines)
