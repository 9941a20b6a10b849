"""The `kv_expert` architecture (Alpamayo-R1 shape).

    vlm              transformers Qwen3VLForConditionalGeneration (vision tower + text LM + lm_head)
    expert           transformers Qwen3VLTextModel from the VLM text config (+ overrides), no
                     token embeddings; reads the VLM's K/V cache layer by layer
    action_in_proj   per-waypoint Fourier action-in projection with a time embedding
                     (`action_proj.type`: the release's `alpamayo_v2`, or drive-tiny's `fourier_silu`)
    action_out_proj  expert hidden -> velocity in the normalized action space

Module names match Alpamayo-R1's (`vlm`, `expert`, `action_in_proj`, `action_out_proj`) so a
state dict converted from it lines up. The methods below are this family's side of the seam
(`vla_ros.model.family.Family`): the Qwen3-VL prompt and prefill into the runtime's cache, the
reasoning decode, the expert's action tokens (all visible to each other, every one seeing the
whole prefix) and the unicycle integration of the actions into a trajectory.
"""
from __future__ import annotations

import copy
import inspect
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextModel

from vla_ros.model.action_proj import ActionOut, action_in_projection
from vla_ros.model.action_space import ActionStats, UnicycleAccelCurvature
from vla_ros.model.config import ModelConfigError, VLAConfig
from vla_ros.model.families import register_family
from vla_ros.model.family import DecodedActions, ImageEmbedding, PrefillResult
from vla_ros.model.history_tokenizer import HistoryTokenizer
from vla_ros.model.image_preprocess import ImagePreprocessor
from vla_ros.model.prompt import Prompt, PromptBuilder
from vla_ros.model.qwen3_layer import Qwen3Layer, rms_norm
from vla_ros.model.traced_step import TracedStep
from vla_ros.model.vision_batched import image_features


# transformers renamed `past_key_values` to `cache` (the old name warns, and goes in 5.40).
CACHE_ARG = "cache" if "cache" in inspect.signature(Qwen3VLForConditionalGeneration.forward).parameters \
    else "past_key_values"


def vlm_config_from_dict(data: dict) -> Qwen3VLConfig:
    try:
        cfg = Qwen3VLConfig.from_dict(copy.deepcopy(data))
    except Exception as exc:  # transformers' strict configs raise several types
        raise ModelConfigError("vlm", f"not a valid Qwen3-VL config: {exc}") from exc
    cfg._attn_implementation = "sdpa"
    cfg.text_config._attn_implementation = "sdpa"
    cfg.vision_config._attn_implementation = "sdpa"
    return cfg


def expert_config(vlm_cfg: Qwen3VLConfig, overrides: dict) -> object:
    """The VLM text config with the expert overrides applied (Alpamayo: deepcopy + setattr)."""
    cfg = copy.deepcopy(vlm_cfg.text_config)
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise ModelConfigError(f"expert.{key}", "is not a field of the VLM text config")
        setattr(cfg, key, value)
    cfg._attn_implementation = "sdpa"
    return cfg


@register_family("kv_expert")
class KVExpertVLA(nn.Module):
    def __init__(self, config: VLAConfig, stats: ActionStats | None = None) -> None:
        super().__init__()
        self.config = config
        self.vlm_config = vlm_config_from_dict(config.vlm)
        self.vlm = Qwen3VLForConditionalGeneration(self.vlm_config)
        ecfg = expert_config(self.vlm_config, config.expert)
        self.expert = Qwen3VLTextModel(ecfg)
        del self.expert.embed_tokens  # inputs come from action_in_proj
        hidden = ecfg.hidden_size
        self.action_in_proj = action_in_projection(config.action_space.action_dim, hidden, config.action_proj)
        self.action_out_proj = ActionOut(hidden, config.action_space.action_dim)
        self.action_space = UnicycleAccelCurvature(config.action_space, stats or ActionStats())
        self.history_tokenizer = HistoryTokenizer(config.history)
        self.image_preprocessor = ImagePreprocessor(config.image)

    @property
    def stats(self) -> ActionStats:
        return self.action_space.stats

    @property
    def text_config(self):
        return self.vlm_config.text_config

    @property
    def expert_config(self):
        return self.expert.config

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---------------------------------------------------------------- prefix
    def cache_shape(self) -> tuple[int, int, int]:
        tc = self.text_config
        return tc.num_hidden_layers, tc.num_key_value_heads, tc.head_dim

    @property
    def image_size_hw(self) -> tuple[int, int]:
        return self.image_preprocessor.model_input_hw

    def encode_images(self, images: np.ndarray, device: torch.device, dtype: torch.dtype) -> list[ImageEmbedding]:
        pixels, grid = self.image_preprocessor(images, device=device)
        out = image_features(self.vlm.model, pixels.to(dtype), grid.to(device))
        return [ImageEmbedding(tokens=out.pooler_output[j], deepstack=tuple(d[j] for d in out.deepstack_features),
                               grid_thw=tuple(int(g) for g in grid[j])) for j in range(len(images))]

    def prompt_builder(self, tokenizer: Any) -> PromptBuilder:
        cached = self.__dict__.get("_prompt_builder")
        if cached is None or cached.tok is not tokenizer:  # text pieces are encoded once per tokenizer
            cached = self.__dict__["_prompt_builder"] = PromptBuilder(tokenizer)
        return cached

    def prefix_plan(self, embeds: list[ImageEmbedding], history_xyz: np.ndarray, tokenizer: Any, *,
                    camera_ids: tuple[int, ...] | None = None, navigation: str | None = None) -> Prompt:
        """camera_ids: each camera's index (prompts that label cameras, `prompt.needs_camera_ids`);
        navigation: the route instruction (prompts with `prompt.navigation`), None for none."""
        bins = self.history_tokenizer.encode(history_xyz) + self.config.history.token_offset
        return self.prompt_builder(tokenizer).build(len(embeds), embeds[0].tokens.shape[0], bins,
                                                    camera_ids=camera_ids, navigation=navigation)

    def prompt_positions(self, prompt: Prompt, embeds: list[ImageEmbedding], device: torch.device) -> torch.Tensor:
        """M-RoPE positions (3, 1, L) of the prompt."""
        return self._rope_index(prompt, embeds, device)

    def _rope_index(self, prompt: Prompt, embeds: list[ImageEmbedding], device: torch.device) -> torch.Tensor:
        """transformers' `get_rope_index` (3, 1, L), cached per layout: the positions depend on the
        token types and image grids alone, and a prompt's layout repeats every tick (its history
        and text tokens change, their count does not); computing them takes a Python loop over
        the images (0.8 ms of a 5 ms prefill of the R1 fixture)."""
        grids = [e.grid_thw for e in embeds]
        types = prompt.mm_token_type_ids
        key = (types.cpu().numpy().tobytes(), tuple(types.shape), tuple(grids), str(device))
        cache = self.__dict__.setdefault("_rope_index_cache", {})
        positions = cache.get(key)
        if positions is None:
            if len(cache) >= 8:  # a few layouts (e.g. navigation guidance's second prompt)
                cache.pop(next(iter(cache)))
            grid = torch.tensor(grids, dtype=torch.long, device=device)
            positions = cache[key] = self.vlm.model.get_rope_index(prompt.input_ids.to(device), types.to(device),
                                                                  image_grid_thw=grid)[0]
        return positions

    def prefill(self, plan: Prompt, embeds: list[ImageEmbedding], cache: Any) -> PrefillResult:
        """The prompt through the VLM text layers into `cache`: transformers' Qwen3-VL forward
        (image tokens scattered into the embeddings, M-RoPE, causal attention, deepstack features
        added to the image tokens after the first layers, logits of the last token) run on the
        fused `Qwen3Layer`s that reasoning decodes with, without transformers' per-call mask and
        cache bookkeeping: the same K/V and logits, bit for bit on both Alpamayo fixtures, in
        2.0 instead of 2.6 ms (R1 fixture, 258 tokens)."""
        device = next(self.parameters()).device
        lm = self.vlm.model.language_model
        layers = self._fused_text_layers()
        ids = plan.input_ids.to(device)
        h = lm.embed_tokens(ids)
        image = plan.mm_token_type_ids.to(device) == 1  # (1, L) the image placeholders
        tokens = torch.cat([e.tokens for e in embeds]).to(h.dtype)
        if int(image.sum()) != tokens.shape[0]:
            raise RuntimeError(f"the prompt holds {int(image.sum())} image placeholders for {tokens.shape[0]} image tokens")
        h = h.masked_scatter(image[..., None], tokens)
        positions = self._rope_index(plan, embeds, device)
        cos, sin = lm.rotary_emb(h, positions)
        cos, sin = cos[:, :, None].to(h.dtype), sin[:, :, None].to(h.dtype)  # (1, L, 1, hd): over heads
        deepstack = [torch.cat([e.deepstack[k] for e in embeds]).to(h.dtype) for k in range(len(embeds[0].deepstack))]
        n = h.shape[1]
        for i, layer in enumerate(layers):
            q, k, v = layer.qkv(h, cos, sin)
            keys, values = cache.layers[i].update(k, v)
            o = torch.nn.functional.scaled_dot_product_attention(q, keys, values, is_causal=True, scale=layer.scaling,
                                                                 enable_gqa=layer.kv_heads != layer.num_heads)
            h = layer.finish(h, o.transpose(1, 2).reshape(1, n, -1))
            if i < len(deepstack):  # h is this layer's new tensor: added in place
                h[image] = h[image] + deepstack[i]
        h = rms_norm(h[:, -1:], lm.norm.weight, self.text_config.rms_norm_eps)
        return PrefillResult(logits=self.vlm.lm_head(h[:, -1]).float(), next_position=int(positions.max()) + 1)

    def _fused_text_layers(self) -> list[Qwen3Layer]:
        layers = self.__dict__.get("_text_layers")
        if layers is None:  # fused views of the VLM's own weights: no copy
            lm = self.vlm.model.language_model
            layers = self.__dict__["_text_layers"] = Qwen3Layer.stack(lm.layers, self.text_config, fused=True)
        return layers

    def decode_token(self, token: int, length: int, position: int, cache: Any,
                     logits: bool = True) -> torch.Tensor | None:
        """One reasoning token through the VLM text layers (fused `Qwen3Layer`s, as the expert
        runs), its K/V appended to `cache` (a runtime `BufferCache`): the same computation as a
        transformers forward of one text token (no image features, it sees the whole cache),
        without the per-call mask and position bookkeeping that dominates small models; on the
        CPU through a trace of itself (`vla_ros.model.traced_step`). logits False: only the K/V
        (a second prefix fed the same tokens, e.g. navigation guidance's unguided one)."""
        table = self.vlm.model.language_model.embed_tokens.weight
        ids = torch.tensor([[token]], device=table.device)
        cos, sin = self._token_rope(position, table)
        views = [layer.reserve(1) for layer in cache.layers]  # [0, length + 1): the new slot last
        kv = [k for k, _ in views] + [v for _, v in views]
        if table.device.type != "cpu" or torch.is_grad_enabled():
            out = self._token_step(ids, cos, sin, *kv)
        else:
            step = self.__dict__.get("_token_trace")
            if step is None:
                step = self.__dict__["_token_trace"] = TracedStep(self._token_step, self, "reasoning token step")
            out = step((kv[0].shape[2], kv[0].stride(), table.dtype), ids, cos, sin, *kv)  # per length and layout
        return out if logits else None

    def _token_step(self, ids: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *kv: torch.Tensor) -> torch.Tensor:
        """ids (1, 1); kv: per layer K then V views (1, KVH, L + 1, hd) whose last slot is this
        token's -> the next token's logits (1, V) float32."""
        lm = self.vlm.model.language_model
        layers = self._fused_text_layers()
        h = torch.nn.functional.embedding(ids, lm.embed_tokens.weight)
        for i, layer in enumerate(layers):
            q, k, v = layer.qkv(h, cos, sin)
            keys, values = kv[i], kv[len(layers) + i]
            keys[:, :, -1:].copy_(k)
            values[:, :, -1:].copy_(v)
            o = torch.nn.functional.scaled_dot_product_attention(q, keys, values, scale=layer.scaling,
                                                                 enable_gqa=layer.kv_heads != layer.num_heads)
            h = layer.finish(h, o.transpose(1, 2).reshape(1, 1, -1))
        h = rms_norm(h, lm.norm.weight, self.text_config.rms_norm_eps)
        head = self.vlm.lm_head
        return torch.nn.functional.linear(h[:, -1], head.weight, head.bias).float()

    def _token_rope(self, position: int, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary cos/sin (1, 1, 1, hd) of one text token at `position` (equal M-RoPE axes), cached:
        a tick's reasoning runs at the same positions as the last one's (the prompt's length
        repeats), and the rotary module is a dozen small ops per token."""
        cache = self.__dict__.setdefault("_token_rope_cache", {})
        key = (position, h.device, h.dtype)
        found = cache.get(key)
        if found is None:
            if len(cache) >= 4096:
                cache.clear()
            pos = torch.full((3, 1, 1), position, dtype=torch.long, device=h.device)
            cos, sin = self.vlm.model.language_model.rotary_emb(h, pos)
            found = cache[key] = (cos[:, :, None].to(h.dtype), sin[:, :, None].to(h.dtype))  # over heads
        return found

    def text_logit_mask(self, tokenizer: Any) -> torch.Tensor:
        ids = tokenizer.ids
        mask = torch.zeros(self.text_config.vocab_size, dtype=torch.bool, device=next(self.parameters()).device)
        mask[ids.traj_first:ids.traj_first + ids.traj_count] = True  # no trajectory tokens in text
        return mask

    # ---------------------------------------------------------------- suffix
    @property
    def action_shape(self) -> tuple[int, int]:
        return self.config.action_space.num_waypoints, self.config.action_space.action_dim

    def time_terms(self, times: torch.Tensor) -> torch.Tensor:
        return self.action_in_proj.time_term(times)

    def embed_suffix(self, x: torch.Tensor, time_term: torch.Tensor) -> torch.Tensor:
        return self.action_in_proj.forward_with_time_term(x, time_term)

    def suffix_layers(self) -> list[Qwen3Layer]:
        return Qwen3Layer.stack(self.expert.layers, self.expert.config, fused=True)

    def suffix_norm(self, h: torch.Tensor) -> torch.Tensor:
        return rms_norm(h, self.expert.norm.weight, self.expert.config.rms_norm_eps)

    def suffix_rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        pos = positions.view(1, 1, -1).expand(3, 1, -1)  # M-RoPE with equal axes: plain RoPE
        probe = torch.empty(1, device=positions.device, dtype=dtype)
        cos, sin = self.expert.rotary_emb(probe, pos)
        return cos[0], sin[0]

    def suffix_mask(self, t: int, device: torch.device) -> None:
        return None  # bidirectional among the action tokens

    def decode_suffix(self, h: torch.Tensor) -> torch.Tensor:
        return self.action_out_proj(h)

    # ---------------------------------------------------------------- output
    def decode_actions(self, actions: torch.Tensor, history_xyz: torch.Tensor,
                       history_rot: torch.Tensor) -> DecodedActions:
        s = actions.shape[0]
        hx = history_xyz[None].expand(s, -1, -1)
        hr = history_rot[None].expand(s, -1, -1, -1)
        xyz, rot = self.action_space.action_to_traj(actions, hx, hr)
        return DecodedActions(actions=self.action_space.denormalize(actions.double()),
                              names=("acceleration", "curvature"), units=("m/s^2", "1/m"), xyz=xyz, rot=rot,
                              within_bounds=self.action_space.within_bounds(actions.double()))
