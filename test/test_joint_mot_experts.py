"""joint_mot's cached inference equals the straightforward full-sequence joint forward, for 2 and 3 experts.

The oracle (vla_ros/model/joint_mot_reference.py) is the joint form (docs/pi0.md section 8): every stream's tokens are projected to
Q/K/V by their own expert's layer, ONE attention runs over the concatenated sequence with the block
mask (`c = cumsum(block flags)`, query i sees key j when c[j] <= c[i]), and each stream applies its
own o_proj, residual, norm and MLP; everything is recomputed for each velocity. The runtime instead
caches every stream but the action tokens once and runs only the action tokens per flow step. The
layer internals are LeRobot's (test_lerobot_compat.py); what this file checks is that cut. The oracle
reproduces LeRobot's recorded velocities on both fixtures, and the cached path reproduces the oracle
with a third expert (InternVLA-A1's shape: a middle stream between the prefix and the actions).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vla_ros.model.families.joint_mot import GemmaSize, JointMoT, resize_with_pad
from vla_ros.model.joint_mot_reference import joint_velocity as reference_velocity
from vla_ros.model.lerobot_checkpoint import lerobot_spec, load_lerobot_policy
from vla_ros.runtime import Policy
from vla_ros.runtime.inputs import PolicyInputs

FIXTURES = Path(__file__).parent / "fixtures"
VARIANTS = {"pi0": FIXTURES / "lerobot_pi0_tiny", "pi05": FIXTURES / "lerobot_pi05_tiny"}


def _observation(path: Path, b: int, res: int):
    ref = load_file(str(path / "reference.safetensors"))
    meta = json.loads((path / "reference.json").read_text())
    cams = [resize_with_pad(ref[f"input.{c}"][b:b + 1], res) for c in meta["cameras"]]
    inputs = PolicyInputs(images=torch.cat(cams).permute(0, 2, 3, 1)[:, None].numpy(),
                          state=ref["input.observation.state"][b].numpy(), task=meta["tasks"][b])
    return ref, inputs


def joint_velocity(model: JointMoT, tokenizer, inputs: PolicyInputs, x: torch.Tensor, t: float) -> torch.Tensor:
    with torch.inference_mode():
        return reference_velocity(model, tokenizer, inputs.images[:, 0], inputs.state, inputs.task, x, t)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_oracle_is_lerobots_computation(variant):
    model, tok = load_lerobot_policy(VARIANTS[variant])
    ref, inputs = _observation(VARIANTS[variant], 1, model.spec.resolution)
    for k in (0, 5, 9):
        v = joint_velocity(model, tok, inputs, ref["flow.x"][k][1:2], float(ref["flow.t"][k, 1]))
        assert float((v[0] - ref["flow.v"][k][1]).abs().max()) < 1e-4


def three_experts(variant: str, seed: int = 0):
    """The fixture's sizes plus a middle expert of its own width and 5 learned tokens, random weights."""
    config, spec, tok = lerobot_spec(VARIANTS[variant])
    middle = GemmaSize(width=48, depth=spec.vlm.depth, mlp_dim=96, num_heads=spec.vlm.num_heads,
                       num_kv_heads=spec.vlm.num_kv_heads, head_dim=spec.vlm.head_dim)
    spec = dataclasses.replace(spec, middle_experts=(middle,), middle_tokens=(5,))
    torch.manual_seed(seed)
    model = JointMoT(config, spec)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                p.normal_(0.0, 0.2)  # Gemma norms start at 0 (gain 1); make them matter
    return model.eval(), tok


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cached_inference_equals_the_joint_forward_with_three_experts(variant):
    model, tok = three_experts(variant)
    policy = Policy(model, tok, max_samples=2)
    _, inputs = _observation(VARIANTS[variant], 0, model.spec.resolution)
    x = torch.randn(1, *policy.model.action_shape, generator=torch.Generator().manual_seed(3))
    ctx = policy.prefill(inputs)
    images = len(inputs.images) * (model.spec.resolution // model.spec.vision.patch_size) ** 2
    language = len(tok.encode_prompt(model.prompt(inputs.task, model.normalize_state(torch.as_tensor(inputs.state))),
                                     model.spec.tokenizer_max_length))
    assert ctx.length == images + language + 5 + (variant == "pi0")  # prefix, middle stream, pi0's state token
    cached = {}
    for t in (1.0, 0.5, 0.1):
        cached[t] = policy.velocity(ctx, x, t)
        err = float((cached[t] - joint_velocity(model, tok, inputs, x, t)).abs().max())
        assert err < 1e-5, f"t={t}: cached vs joint {err:.2e}"
    out = policy.act(inputs, noise=x)
    assert out.actions.shape == (1, model.spec.chunk_size, model.spec.action_dim)
    with torch.no_grad():  # the middle expert is really read by the actions
        model.model.middle_experts[0].queries.add_(1.0)
    ctx = policy.prefill(inputs)
    assert float((policy.velocity(ctx, x, 0.5) - cached[0.5]).abs().max()) > 1e-3
