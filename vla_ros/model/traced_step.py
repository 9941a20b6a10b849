"""A hot inference step run through a TorchScript trace of itself, on the CPU.

A tiny model's step is hundreds of small ATen ops, and on a CPU the Python between them costs as
much as the ops (a quarter of a denoising step of the 2-layer Alpamayo fixture). A trace runs the
same ops, recorded once, without that Python. It is used where a step's inputs are all tensors and
nothing in it depends on a length that changes between calls (the K/V it reads are inputs, views
whose own tokens sit in their last slots).

Safety: the trace is built on first use; each new `key` (e.g. the K/V length) is run once both
eagerly and traced and the two must be bit-equal (NaN where NaN); a trace that fails to build or
to match is dropped, with a warning, and the eager step runs from then on.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable

import torch
from torch import nn


class TracedStep:
    def __init__(self, step: Callable[..., torch.Tensor], module: nn.Module, what: str) -> None:
        """step: the eager function (tensors in, one tensor out); module: whose weights it reads
        (they become the trace's constants); what: its name in warnings."""
        self.step, self.module, self.what = step, module, what
        self.traced: Callable[..., torch.Tensor] | None = None
        self.failed = False
        self.checked: set[Hashable] = set()

    def __call__(self, key: Hashable, *args: torch.Tensor) -> torch.Tensor:
        if self.failed:
            return self.step(*args)
        if self.traced is None:
            self.traced = self._trace(args)
            if self.traced is None:
                self.failed = True
                return self.step(*args)
        if key in self.checked:
            return self.traced(*args)
        eager = self.step(*args)  # steps that write K/V write the same values twice
        out = self.traced(*args)
        if not bool(((out == eager) | (out.isnan() & eager.isnan())).all()):
            warnings.warn(f"the traced {self.what} differs from the eager one ({key}); running it eagerly",
                          RuntimeWarning, stacklevel=2)
            self.failed = True
            return eager
        if len(self.checked) >= 4096:
            self.checked.clear()
        self.checked.add(key)
        return out

    def _trace(self, args: tuple[torch.Tensor, ...]) -> Callable[..., torch.Tensor] | None:
        # The weights become constants of the trace, which must not require grad while it is built.
        params = [p for p in self.module.parameters() if p.requires_grad]
        try:
            for p in params:
                p.requires_grad_(False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                step = self.step

                def run(*a: torch.Tensor) -> torch.Tensor:  # a plain function: jit refuses a Module's bound method
                    return step(*a)

                return torch.jit.trace(run, args, check_trace=False)
        except Exception as exc:  # noqa: BLE001 - any failure: the eager step is always there
            warnings.warn(f"tracing the {self.what} failed ({exc}); running it eagerly", RuntimeWarning, stacklevel=3)
            return None
        finally:
            for p in params:
                p.requires_grad_(True)
