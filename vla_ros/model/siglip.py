"""SigLIP vision tower as PaliGemma uses it (no pooling head), with transformers' module names so
a PaliGemma / LeRobot state dict loads by name (`vision_model.embeddings.patch_embedding`, ...).

Patch conv + learned positions, pre-norm encoder layers (LayerNorm eps 1e-6, attention with
biases, MLP fc2(gelu_tanh(fc1))), then `post_layernorm`. Images in, tokens out; nothing cached.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(width, width) for _ in range(4))
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (p(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        o = F.scaled_dot_product_attention(q, k, v, scale=(d // self.heads) ** -0.5)
        return self.out_proj(o.transpose(1, 2).reshape(b, n, d))


class _Layer(nn.Module):
    def __init__(self, width: int, mlp_dim: int, heads: int) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(width, eps=LN_EPS)
        self.self_attn = _Attention(width, heads)
        self.layer_norm2 = nn.LayerNorm(width, eps=LN_EPS)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(width, mlp_dim)
        self.mlp.fc2 = nn.Linear(mlp_dim, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.layer_norm2(x)), approximate="tanh"))


class SiglipVisionModel(nn.Module):
    """`vision_model` of transformers' SiglipVisionModel: images (N, 3, H, W) in [-1, 1] -> (N, P, width)."""

    def __init__(self, width: int, depth: int, mlp_dim: int, heads: int, patch: int, image_size: int) -> None:
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.patch_embedding = nn.Conv2d(3, width, patch, stride=patch)
        self.embeddings.position_embedding = nn.Embedding((image_size // patch) ** 2, width)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(_Layer(width, mlp_dim, heads) for _ in range(depth))
        self.post_layernorm = nn.LayerNorm(width, eps=LN_EPS)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.embeddings.patch_embedding(pixels).flatten(2).transpose(1, 2)
        x = x + self.embeddings.position_embedding.weight
        for layer in self.encoder.layers:
            x = layer(x)
        return self.post_layernorm(x)
