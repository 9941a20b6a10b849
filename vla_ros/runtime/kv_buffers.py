"""Preallocated K/V buffers shared by prefill, reasoning decode and denoising.

Per layer one K and one V tensor of shape (1, KVH, capacity + suffix_slots, head_dim):

    [0, capacity)                         prompt tokens, then reasoning tokens (written once)
    [capacity, capacity + suffix_slots)   the action tokens of all samples (samples x T),
                                          overwritten in place every denoising step

Nothing is allocated, copied or grown per step: the prefix region is read-only while denoising
and the suffix region has fixed slots. Eager denoising without a mask (the CPU; one sample on a
GPU) reads them through `SampleKV`: per sample [prefix | own T slots], views of these buffers for
one sample, the prefix copied in once per tick for several, so that each layer-step is one
batched attention without a mask. `BufferCache` lets transformers write the prefill and
decode K/V straight into the prefix region (it is a `Cache` whose layers return views).
"""
from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer


class KVCapacityError(RuntimeError):
    """The prompt (plus reasoning) does not fit the preallocated K/V buffers."""


class KVBuffers:
    def __init__(self, num_layers: int, kv_heads: int, head_dim: int, capacity: int, suffix_slots: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.capacity = capacity
        self.suffix_slots = suffix_slots
        shape = (1, kv_heads, capacity + suffix_slots, head_dim)
        # zeros, not empty: masked-out slots must never hold NaN bit patterns (0 * NaN = NaN).
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.length = 0  # tokens held in the prefix region
        self.epoch = 0  # bumped by every prefill; contexts of older epochs are stale

    def fits(self, num_layers: int, kv_heads: int, head_dim: int, capacity: int, suffix_slots: int,
             device: torch.device, dtype: torch.dtype) -> bool:
        k = self.keys[0]
        return (len(self.keys) == num_layers and k.shape[1] == kv_heads and k.shape[3] == head_dim
                and self.capacity >= capacity and self.suffix_slots == suffix_slots and k.device == device
                and k.dtype == dtype)

    def reset(self) -> None:
        self.length = 0
        self.epoch += 1

    def signature(self) -> list[tuple[int, tuple[int, ...]]]:
        """(data pointer, shape) of every buffer: unchanged across steps proves nothing moved or grew."""
        return [(t.data_ptr(), tuple(t.shape)) for t in self.keys + self.values]

    def cache(self) -> "BufferCache":
        return BufferCache(self)

    def per_sample(self, prefix_len: int, samples: int, tokens: int) -> "SampleKV":
        return SampleKV.of(self, prefix_len, samples, tokens)


class SampleKV:
    """Per layer one K and one V tensor (S, KVH, prefix_len + T, hd): every sample's rows hold the
    prefix, then that sample's own T action tokens (the last T slots, overwritten every step).
    Attention over it is exactly one softmax over [prefix | own tokens] per sample, as the masked
    buffer layout gives, in one unmasked call. One sample: views of `KVBuffers` (no copy); several:
    the prefix copied in once per tick."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], samples: int, tokens: int) -> None:
        self.keys, self.values, self.samples, self.tokens = keys, values, samples, tokens

    @classmethod
    def of(cls, buffers: KVBuffers, prefix_len: int, samples: int, tokens: int) -> "SampleKV":
        if samples == 1:
            return cls([b[:, :, :prefix_len + tokens] for b in buffers.keys],
                       [b[:, :, :prefix_len + tokens] for b in buffers.values], 1, tokens)

        def expand(b: torch.Tensor) -> torch.Tensor:
            t = torch.empty((samples, b.shape[1], prefix_len + tokens, b.shape[3]), device=b.device, dtype=b.dtype)
            t[:, :, :prefix_len] = b[:, :, :prefix_len]  # broadcast over samples
            return t

        return cls([expand(b) for b in buffers.keys], [expand(b) for b in buffers.values], samples, tokens)

    def tensors(self) -> list[torch.Tensor]:
        return [*self.keys, *self.values]

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v (1, KVH, S*T, hd), sample-major -> this layer's (S, KVH, P + T, hd) K and V. The
        slots are counted from the end, so nothing here depends on the prefix length."""
        s, t = self.samples, self.tokens
        kb, vb = self.keys[layer], self.values[layer]
        kb[:, :, -t:].copy_(k[0].unflatten(1, (s, t)).transpose(0, 1))
        vb[:, :, -t:].copy_(v[0].unflatten(1, (s, t)).transpose(0, 1))
        return kb, vb


class _BufferLayer(DynamicLayer):
    """A DynamicLayer whose storage is a preallocated buffer: `update` copies the new K/V into the
    next free slots and returns views of the filled part (what DynamicLayer would return)."""

    def __init__(self, owner: KVBuffers, index: int) -> None:
        super().__init__()
        self.owner = owner
        self.index = index
        self.filled = owner.length
        kb, vb = owner.keys[index], owner.values[index]
        self.dtype, self.device = kb.dtype, kb.device
        self.keys, self.values = kb[:, :, : self.filled], vb[:, :, : self.filled]
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        pass

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        if key_states.shape[0] != 1:
            raise KVCapacityError("the prefix cache holds one sequence (batch 1)")
        n = key_states.shape[-2]
        keys, values = self.reserve(n)
        start = keys.shape[2] - n  # the reserved slots (not `-n:`, which for n = 0 is everything)
        keys[:, :, start:].copy_(key_states)
        values[:, :, start:].copy_(value_states)
        return keys, values

    def reserve(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Count the next n slots as filled for a caller that writes them itself (the reasoning
        token's step): views of [0, filled + n), the new slots last."""
        end = self.filled + n
        if end > self.owner.capacity:
            raise KVCapacityError(f"prefix needs {end} K/V slots but {self.owner.capacity} are preallocated")
        kb, vb = self.owner.keys[self.index], self.owner.values[self.index]
        self.filled = end
        self.keys, self.values = kb[:, :, :end], vb[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.filled

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("the prefix cache never shrinks")


class BufferCache(Cache):
    """A transformers Cache over KVBuffers' prefix region. After a forward, call `commit()` to
    record the new length in the buffers."""

    def __init__(self, buffers: KVBuffers) -> None:
        super().__init__(layers=[_BufferLayer(buffers, i) for i in range(len(buffers.keys))])
        self.buffers = buffers

    def commit(self) -> int:
        lengths = {layer.filled for layer in self.layers}
        if len(lengths) != 1:
            raise RuntimeError(f"layers filled unequally: {sorted(lengths)}")
        self.buffers.length = lengths.pop()
        return self.buffers.length
