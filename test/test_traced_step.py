"""The CPU's traced steps (vla_ros/model/traced_step.py): the trace runs where it should, equals
the eager step, and a trace that would be wrong is caught and dropped for the eager step."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from vla_ros.model.traced_step import TracedStep
from vla_ros.runtime import Policy
from vla_ros.runtime.tools.synthetic import synthetic_inputs


def test_trace_equals_eager_and_is_used():
    lin = nn.Linear(8, 8)
    calls = []

    def step(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)  # runs in Python only when the eager step (or the tracing) runs
        return torch.relu(lin(x)) * 2

    traced = TracedStep(step, lin, "test step")
    x = torch.randn(4, 8)
    with torch.inference_mode():
        first = traced("a", x)  # traced (1 call), then checked against eager (1 call)
        n = len(calls)
        again = traced("a", x)  # checked key: the trace alone, no Python step
    assert not traced.failed and traced.traced is not None
    assert len(calls) == n == 2
    assert torch.equal(first, again) and torch.equal(first, torch.relu(lin(x)) * 2)
    assert all(p.requires_grad for p in lin.parameters())  # restored after tracing


def test_a_trace_that_differs_falls_back_to_eager():
    lin = nn.Linear(4, 4)

    def step(x: torch.Tensor) -> torch.Tensor:
        scale = float(x.abs().max())  # a Python number: the trace bakes the first call's value
        return lin(x) * scale

    traced = TracedStep(step, lin, "test step")
    with torch.inference_mode():
        x1, x2 = torch.ones(2, 4), 3 * torch.ones(2, 4)
        assert torch.equal(traced("small", x1), step(x1))
        with pytest.warns(RuntimeWarning, match="differs from the eager one"):
            out = traced("large", x2)
        assert torch.equal(out, step(x2)) and traced.failed
        assert torch.equal(traced("small", x1), step(x1))  # eager from now on


def test_policy_runs_both_traces_on_the_cpu():
    """random:tiny (kv_expert) on the CPU: the denoising step (1 and 3 samples) and the reasoning
    token's step go through their traces, and a traced tick equals the eager one."""
    policy = Policy.from_pretrained("random:tiny", device="cpu", dtype="float32", max_samples=3)
    tick = synthetic_inputs(0, speed=6.0, yaw_rate=0.1, height=96, width=224)
    noise = torch.randn(3, 64, 2, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no trace dropped
        outs = [policy.act(tick, reasoning=True, max_reasoning_tokens=6, noise=noise[:s]) for s in (1, 3, 1, 3)]
    traces = policy.backend._traces
    assert set(traces) == {1, 3} and all(t.traced is not None and not t.failed for t in traces.values())
    token = policy.model.__dict__["_token_trace"]
    assert token.traced is not None and not token.failed and token.checked
    for a, b in zip(outs[:2], outs[2:]):  # checked-then-traced ticks repeat exactly
        assert a.reasoning == b.reasoning
        assert (a.raw_actions == b.raw_actions).all()
    # Eager (the traces dropped) gives the same tick.
    for t in (*traces.values(), token):
        t.failed = True
    eager = policy.act(tick, reasoning=True, max_reasoning_tokens=6, noise=noise)
    assert eager.reasoning == outs[3].reasoning and (eager.raw_actions == outs[3].raw_actions).all()

