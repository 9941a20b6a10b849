"""The `kv_expert` architecture (Alpamayo-R1 shape).

    vlm              transformers Qwen3VLForConditionalGeneration (vision tower + text LM + lm_head)
    expert           transformers Qwen3VLTextModel from the VLM text config (+ overrides), no
                     token embeddings; reads the VLM's K/V cache layer by layer
    action_in_proj   per-waypoint Fourier action-in projection with a time embedding
    action_out_proj  expert hidden -> velocity in the normalized action space

Module names match Alpamayo-R1's (`vlm`, `expert`, `action_in_proj`, `action_out_proj`) so a
state dict converted from it lines up. The hot paths (cached prefill, denoising, decoding) live
in `vla_ros.runtime`; this module holds the weights and the pieces around them.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextModel

from vla_ros.model.action_proj import ActionOut, FourierActionIn
from vla_ros.model.action_space import ActionStats, UnicycleAccelCurvature
from vla_ros.model.config import ModelConfigError, VLAConfig
from vla_ros.model.flow_matching import FlowSchedule, flow_schedule
from vla_ros.model.history_tokenizer import HistoryTokenizer
from vla_ros.model.image_preprocess import ImagePreprocessor


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
        self.action_in_proj = FourierActionIn(config.action_space.action_dim, hidden, config.action_proj)
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

    def schedule(self, steps: int | None = None) -> FlowSchedule:
        return flow_schedule(self.config.flow, steps)

    def velocity(self, expert_hidden: torch.Tensor) -> torch.Tensor:
        """Expert last hidden (B, T, D) -> predicted velocity (B, T, A)."""
        return self.action_out_proj(expert_hidden)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
