"""`bench runtime` for a `joint_mot` model (a LeRobot pi0 / pi0.5 directory): the Policy against the
uncached joint forward (`vla_ros.model.joint_mot_reference`), in the same run, alternately.

- tick_ms: `Policy.act` from raw inputs (vision, prompt, prefix into the cache, `steps` Euler steps
  of the action tokens only, unnormalized chunk);
- prefill_ms / denoise_ms: its two halves;
- baseline_denoise_ms: the same Euler steps with the joint forward recomputing every stream (prefix,
  middle experts, state) at every step, as joint attention reads from its definition;
- max_abs_diff: the two normalized chunks from the same noise.
Synthetic inputs: each camera a deterministic frame at the model's input size, a fixed state and
task. LeRobot's own time on the same weights is `bench/lerobot.py`'s.
"""
from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import torch

from vla_ros.model.joint_mot_reference import joint_velocity
from vla_ros.runtime.tools.backend_bench import timed_ms
from vla_ros.runtime.inputs import PolicyInputs
from vla_ros.runtime.tools.synthetic import synthetic_frame


def run_joint_mot_bench(policy: Any, model_name: str, steps: int = 10, samples: int = 1,
                        repeats: int = 10) -> dict[str, Any]:
    model, dev = policy.model, policy.device
    h, w = policy.image_size_hw
    images = np.stack([synthetic_frame(0, c, 0, h, w) for c in range(model.config.image.num_cameras)])
    state = np.linspace(-0.5, 0.5, model.spec.state_dim).astype(np.float32)
    inputs = PolicyInputs(images=images[:, None], state=state, task="pick up the red cube")
    noise = torch.randn(samples, *policy.model.action_shape, generator=torch.Generator().manual_seed(0)).to(dev, policy.dtype)
    sched = model.schedule(steps)

    def baseline() -> torch.Tensor:
        with torch.inference_mode():
            xs = []
            for s in range(samples):  # the joint forward has no shared cache: each sample on its own
                x = noise[s:s + 1]
                for t, dt in zip(sched.times, sched.dts):
                    x = x + dt * joint_velocity(model, policy.tokenizer, images, state, inputs.task, x, t)
                xs.append(x)
            return torch.cat(xs)

    ctx = policy.prefill(inputs)
    ours = policy.denoise(ctx, noise=noise, steps=steps)  # warm-up
    ref = baseline()
    tick, prefill, denoise, base = [], [], [], []
    for _ in range(repeats):  # alternately, so that machine load affects both alike
        tick.append(timed_ms(lambda: policy.act(inputs, noise=noise, steps=steps), dev))
        prefill.append(timed_ms(lambda: policy.prefill(inputs), dev))
        ctx = policy.prefill(inputs)
        denoise.append(timed_ms(lambda: policy.denoise(ctx, noise=noise, steps=steps), dev))
        base.append(timed_ms(baseline, dev))
    med = statistics.median
    return {
        "model": model_name, "family": "joint_mot", "variant": model.spec.variant, "device": str(dev),
        "dtype": str(policy.dtype).replace("torch.", ""), "steps": steps, "samples": samples, "repeats": repeats,
        "prompt_tokens": ctx.prompt_length, "chunk_size": model.spec.chunk_size,
        "tick_ms": med(tick), "prefill_ms": med(prefill), "denoise_ms": med(denoise),
        "baseline_denoise_ms": med(base), "speedup": med(base) / med(denoise),
        "max_abs_diff": float((ours.float() - ref.float()).abs().max()),
    }


def format_joint_mot_report(r: dict[str, Any]) -> str:
    return "\n".join([
        f"model {r['model']} ({r['variant']})  device {r['device']}  dtype {r['dtype']}  steps {r['steps']}  "
        f"samples {r['samples']}  cached prefix {r['prompt_tokens']} tokens  chunk {r['chunk_size']}",
        f"{'':28}{'ours':>10}{'baseline':>10}{'ratio':>8}",
        f"{'denoise ms':28}{r['denoise_ms']:10.2f}{r['baseline_denoise_ms']:10.2f}{r['speedup']:8.2f}",
        f"{'prefill ms':28}{r['prefill_ms']:10.2f}",
        f"{'whole tick ms (act)':28}{r['tick_ms']:10.2f}",
        f"max abs diff (denoise vs baseline): {r['max_abs_diff']:.2e}",
        "baseline: the uncached joint forward, every stream recomputed each step; LeRobot itself: bench/lerobot.py",
    ])
