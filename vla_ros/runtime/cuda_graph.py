"""The whole denoising loop captured in one CUDA graph.

A denoising step at batch 1 is launch-bound on a GPU (a few hundred small kernels reading the
expert weights once), so the N steps are captured once and replayed with a single launch. The
graph reads static buffers: noise, rotary cos/sin and the attention mask are copied into them
each tick (built once per tick); the suffix K/V live at fixed slots [capacity, capacity + S*T)
of the preallocated K/V buffers, and the attention reads the whole buffer with the mask hiding
unused prefix slots, so a prefix of a different length (reasoning) needs no re-capture. A new
graph is captured only when the sample count, step count or buffer capacity changes, or whether
the loop is guided (RTC: its guide tensors are further static inputs, `extra`).
"""
from __future__ import annotations

from collections.abc import Callable

import torch


class DenoiseGraph:
    def __init__(self, loop: Callable[..., torch.Tensor], noise: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 mask: torch.Tensor, extra: tuple[torch.Tensor, ...] = (), warmup: int = 2) -> None:
        """loop(x, cos, sin, mask, *extra) -> x after all steps; the example tensors give shapes/devices."""
        if noise.device.type != "cuda":
            raise RuntimeError("CUDA graphs need CUDA tensors")
        self.x = noise.clone()
        self.cos, self.sin, self.mask = cos.clone(), sin.clone(), mask.clone()
        self.extra = tuple(e.clone() for e in extra)
        stream = torch.cuda.Stream(device=noise.device)
        stream.wait_stream(torch.cuda.current_stream(noise.device))
        with torch.cuda.stream(stream):  # warm-up outside capture (allocator, lazy init, autotune)
            for _ in range(warmup):
                loop(self.x, self.cos, self.sin, self.mask, *self.extra)
        torch.cuda.current_stream(noise.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = loop(self.x, self.cos, self.sin, self.mask, *self.extra)
        self.replays = 0

    def run(self, noise: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
            extra: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        if len(extra) != len(self.extra):
            raise ValueError(f"this graph was captured with {len(self.extra)} extra inputs, got {len(extra)}")
        self.x.copy_(noise)
        self.cos.copy_(cos)
        self.sin.copy_(sin)
        self.mask.copy_(mask)
        for static, value in zip(self.extra, extra):
            static.copy_(value)
        self.graph.replay()
        self.replays += 1
        return self.out.clone()  # the static output is overwritten by the next replay
