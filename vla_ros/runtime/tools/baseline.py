"""The straightforward (Alpamayo-R1 released code) path, kept as the reference and the
benchmark baseline:

- prefill: one transformers forward over the processed prompt with every image encoded, K/V in
  a transformers DynamicCache;
- denoise: per step, the transformers expert is called with the cache, 3D
  position ids continuing after the prompt and a 4D mask (action tokens see everything), then
  the cache is cropped back to the prompt (`cache.crop`); samples repeat the cache per sample.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import DynamicCache

from vla_ros.model.families.kv_expert import CACHE_ARG, KVExpertVLA
from vla_ros.model.flow_matching import FlowSchedule
from vla_ros.model.prompt import PromptBuilder


@dataclass
class BaselinePrefix:
    cache: DynamicCache
    length: int
    next_position: int
    logits: torch.Tensor  # (1, V) last-token logits
    inputs: dict  # the transformers inputs (input_ids, pixel_values, image_grid_thw, mm_token_type_ids)


def baseline_inputs(model: KVExpertVLA, prompts: PromptBuilder, images: np.ndarray, history_xyz: np.ndarray,
                    device: torch.device, dtype: torch.dtype, camera_ids: tuple[int, ...] | None = None) -> dict:
    """images uint8 (V, F, H, W, 3) -> the processor-style transformers inputs (camera_ids: for
    prompts that name the cameras, Alpamayo 1.5)."""
    v, f, h, w, _ = images.shape
    pixels, grid = model.image_preprocessor(images.reshape(v * f, h, w, 3), device=device)
    n_tok = int(grid[0].prod()) // model.config.image.merge_size ** 2
    # history token ids start after the future bins where the checkpoint says so (Alpamayo-R1 releases)
    prompt = prompts.build(v * f, n_tok, model.history_tokenizer.encode(history_xyz) + model.config.history.token_offset,
                           camera_ids=camera_ids if model.config.prompt.needs_camera_ids else None)
    return {"input_ids": prompt.input_ids.to(device), "mm_token_type_ids": prompt.mm_token_type_ids.to(device),
            "pixel_values": pixels.to(device, dtype), "image_grid_thw": grid.to(device)}


@torch.inference_mode()
def baseline_prefill(model: KVExpertVLA, inputs: dict) -> BaselinePrefix:
    model.vlm.model.rope_deltas = None  # transformers keeps this between calls
    cache = DynamicCache(config=model.vlm_config)
    out = model.vlm(**inputs, **{CACHE_ARG: cache}, use_cache=True)
    length = int(inputs["input_ids"].shape[1])
    delta = int(model.vlm.model.rope_deltas.reshape(-1)[0])
    return BaselinePrefix(cache=cache, length=length, next_position=length + delta,
                          logits=out.logits[:, -1].float(), inputs=inputs)


@torch.inference_mode()
def baseline_denoise(model: KVExpertVLA, prefix: BaselinePrefix, noise: torch.Tensor, schedule: FlowSchedule) -> torch.Tensor:
    """noise (S, T, A) -> actions (S, T, A). Leaves prefix.cache as it found it (cropped)."""
    s, t, _ = noise.shape
    cache = prefix.cache
    if s > 1:  # Alpamayo repeats the prompt cache per sample
        cache = DynamicCache(config=model.vlm_config)
        for i, layer in enumerate(prefix.cache.layers):
            cache.update(layer.keys.repeat_interleave(s, 0), layer.values.repeat_interleave(s, 0), i)
    dev = noise.device
    position_ids = (prefix.next_position + torch.arange(t, device=dev)).view(1, 1, t).expand(3, s, t)
    mask = torch.zeros(s, 1, t, prefix.length + t, dtype=noise.dtype, device=dev)  # everything visible
    x = noise
    for i, dt in enumerate(schedule.dts):
        tt = torch.full((s,), schedule.times[i], device=dev)
        emb = model.action_in_proj(x, tt)
        out = model.expert(inputs_embeds=emb, position_ids=position_ids, **{CACHE_ARG: cache},
                           attention_mask=mask, use_cache=True, is_causal=False)
        cache.crop(-t)
        x = x + dt * model.action_out_proj(out.last_hidden_state[:, -t:])
    return x
