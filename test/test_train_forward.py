"""The training forward computes what the runtime computes: same prompt, positions and masks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_ros.model.build import build_model
from vla_ros.model.config import PromptConfig
from vla_ros.model.prompt import PromptBuilder
from vla_ros.runtime.inputs import PolicyInputs
from vla_ros.runtime.policy import Policy
from vla_ros.train.architecture import drive_tiny_config
from vla_ros.train.bpe import train_bpe
from vla_ros.train.forward import joint_forward, make_batch, noisy_actions

TINY = {"vlm": {"text_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                                "num_key_value_heads": 1},
                "vision_config": {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 1, "out_hidden_size": 64}}}


def _inputs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images = rng.integers(0, 256, size=(n, 4, 4, 64, 128, 3), dtype=np.uint8)
    t = (np.arange(16) - 15) * 0.1
    xyz = np.zeros((n, 16, 3))
    xyz[..., 0] = t * rng.uniform(5, 15, size=(n, 1))
    xyz[..., 1] = 0.02 * t ** 2
    rot = np.broadcast_to(np.eye(3), (n, 16, 3, 3)).copy()
    return images, xyz, rot


def test_training_forward_matches_runtime():
    torch.manual_seed(0)
    tok = train_bpe(PromptConfig(), 1000)
    model = build_model(drive_tiny_config(tok, overrides=TINY), seed=7)
    rng = np.random.default_rng(0)
    images, xyz, rot = _inputs(rng, 2)
    texts = ["Left curve ahead; slow down and keep lane.", "Road clear; keep speed and keep lane."]
    actions = torch.randn(2, 64, 2)
    noise = torch.randn(2, 64, 2)
    t = torch.tensor([0.3, 0.7])
    # Reasoning dropped for both: the action tokens see the prompt only, like a no-reasoning tick.
    batch = make_batch(model, tok, PromptBuilder(tok), images, xyz, texts, actions, torch.zeros(2, dtype=torch.bool))
    x_t, _ = noisy_actions(model, actions, noise, t)
    with torch.no_grad():
        velocity, logits = joint_forward(model, batch, x_t, t)
    policy = Policy(model, tok)
    for i in range(2):
        ctx = policy.prefill(PolicyInputs(images=images[i], history_xyz=xyz[i], history_rot=rot[i]), reasoning_budget=0)
        v_rt = policy.velocity(ctx, x_t[i:i + 1], float(t[i]))
        assert torch.allclose(velocity[i], v_rt[0], atol=2e-4), float((velocity[i] - v_rt[0]).abs().max())
        assert torch.allclose(logits[i, 0], ctx.logits[0], atol=2e-4)  # first reasoning token's distribution


def test_reasoning_conditioning_changes_the_actions():
    tok = train_bpe(PromptConfig(), 1000)
    model = build_model(drive_tiny_config(tok, overrides=TINY), seed=7)
    images, xyz, _ = _inputs(np.random.default_rng(1), 1)
    pb = PromptBuilder(tok)
    x, t = torch.randn(1, 64, 2), torch.tensor([0.5])
    with torch.no_grad():
        outs = [joint_forward(model, make_batch(model, tok, pb, images, xyz, ["Road clear; keep speed and keep lane."],
                                                torch.zeros(1, 64, 2), torch.tensor([keep])), x, t)[0] for keep in (False, True)]
    assert not torch.allclose(outs[0], outs[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="training on CUDA needs a CUDA GPU (none here)")
def test_training_losses_and_gradients_on_cuda_match_cpu():
    # The GPU path (images preprocessed on the device, every index tensor created there) must
    # compute what the CPU computes; float32 without TF32 so the two agree to rounding.
    from vla_ros.train.forward import training_losses
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        _compare_cpu_and_cuda(training_losses)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _compare_cpu_and_cuda(training_losses) -> None:
    tok = train_bpe(PromptConfig(), 1000)
    images, xyz, _ = _inputs(np.random.default_rng(2), 3)
    texts = ["Left curve ahead; slow down and keep lane.", "Road clear; keep speed and keep lane.", "Stop."]
    actions, noise, t = torch.randn(3, 64, 2), torch.randn(3, 64, 2), torch.tensor([0.2, 0.5, 0.9])
    keep = torch.tensor([True, False, True])
    results = []
    for device in ("cpu", "cuda"):
        model = build_model(drive_tiny_config(tok, overrides=TINY), seed=7).to(device)
        batch = make_batch(model, tok, PromptBuilder(tok), images, xyz, texts, actions, keep, device=device)
        assert batch.pixel_values.device.type == batch.input_ids.device.type == device
        loss = training_losses(model, batch, t.to(device), noise.to(device))
        (loss.flow + loss.lm).backward()
        grads = torch.cat([p.grad.flatten().cpu() for p in model.parameters() if p.grad is not None])
        results.append((float(loss.flow.detach()), float(loss.lm.detach()), grads))
    (f_cpu, lm_cpu, g_cpu), (f_gpu, lm_gpu, g_gpu) = results
    assert abs(f_cpu - f_gpu) < 1e-4 * max(1.0, f_cpu) and abs(lm_cpu - lm_gpu) < 1e-4 * max(1.0, lm_cpu)
    assert float((g_cpu - g_gpu).norm() / g_cpu.norm()) < 1e-3
