"""Host-side inputs of the exported graphs (`vla-ros export`), shared by the ONNX Runtime and
TensorRT backends: the same preprocessing, prompt and positions as the torch backend, so every
backend sees identical inputs. kv_expert: `vision_tables`, `encode_images`, `prefill_feeds`;
joint_mot (pi0 / pi0.5): `joint_mot_encode_images`, `joint_mot_prefill_feeds`."""
from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from vla_ros.model.family import ImageEmbedding

VisionFn = Callable[[np.ndarray, tuple[int, int, int]], tuple[np.ndarray, np.ndarray]]


@functools.lru_cache(maxsize=8)
def vision_tables(model: torch.nn.Module, grid: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Per-image-size inputs of vision.onnx, computed with the vision tower's own helpers:
    pos_index/pos_weight (L, taps) and rope_cos/rope_sin (L, hd_v), for one image of `grid`."""
    from transformers.vision_utils import get_vision_interpolation_indices_and_weights, get_vision_position_ids

    vis = model.vlm.model.visual
    g = torch.tensor([grid], dtype=torch.long)
    with torch.inference_mode():
        idx, w = get_vision_interpolation_indices_and_weights(
            g, num_grid_per_side=vis.num_grid_per_side, mode=vis.interpolation_mode,
            align_corners=vis.interpolation_align_corners, spatial_merge_size=vis.spatial_merge_size)
        pos = get_vision_position_ids(g, vis.spatial_merge_size)
        cos, sin = vis.rotary_pos_emb(torch.empty(1), pos)
    return {"pos_index": idx.numpy().astype(np.int64), "pos_weight": w.float().numpy(),
            "rope_cos": cos.float().numpy(), "rope_sin": sin.float().numpy()}


def encode_images(model: torch.nn.Module, images: np.ndarray, vision_features: VisionFn) -> list[ImageEmbedding]:
    """uint8 (N, H, W, 3) -> embeddings, through an exported vision graph `vision_features`
    (pixel patches (N, L, Cp), grid -> image_embeds (N, L/m^2, D), deepstack (K, N, L/m^2, D))."""
    pixels, grid = model.image_preprocessor(images, device="cpu")
    g = tuple(int(v) for v in grid[0])
    tokens, deep = vision_features(pixels.view(len(images), -1, pixels.shape[-1]).numpy(), g)
    return [ImageEmbedding(tokens=torch.from_numpy(tokens[j]),
                           deepstack=tuple(torch.from_numpy(deep[k, j]) for k in range(deep.shape[0])), grid_thw=g)
            for j in range(len(images))]


def prefill_feeds(model: torch.nn.Module, prompt: object, embeds: list[ImageEmbedding],
                  embed_tokens: Callable[[np.ndarray], np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """The family's prompt for these image embeddings -> prefill.onnx feeds (image tokens
    scattered into the text embeddings, DeepStack features dense with zeros elsewhere) and the
    rotary position of the first action token. embed_tokens: ids (1, P) -> (1, P, D) writable."""
    ids = prompt.input_ids
    with torch.inference_mode():
        positions = model.prompt_positions(prompt, embeds, torch.device("cpu"))
    emb = embed_tokens(ids.numpy().astype(np.int64))
    image = (ids[0] == model.vlm_config.image_token_id).numpy()
    emb[0, image] = torch.cat([e.tokens for e in embeds]).float().numpy().astype(emb.dtype)
    k = len(embeds[0].deepstack)
    deep = np.zeros((k, 1, emb.shape[1], emb.shape[2]), dtype=emb.dtype)
    for i in range(k):
        deep[i, 0, image] = torch.cat([e.deepstack[i] for e in embeds]).float().numpy()
    feeds = {"inputs_embeds": emb, "deepstack_embeds": deep, "position_ids": positions.numpy().astype(np.int64),
             "attention_mask": np.ones((1, emb.shape[1]), dtype=np.int64)}
    return feeds, int(positions.max()) + 1


def joint_mot_encode_images(model: torch.nn.Module, images: np.ndarray, vision: object) -> list[ImageEmbedding]:
    """uint8 (N, H, W, 3) or float in [0, 1] -> embeddings, through a joint_mot vision graph
    (`vision.run`: pixels (N, 3, R, R) in [-1, 1] -> image_embeds (N, tokens, W)); the resize
    with pad and scaling are the family's own."""
    with torch.inference_mode():
        pixels = model.preprocess_images(images, torch.device("cpu"))
    tokens = vision.run(None, {"pixels": pixels.numpy()})[0]  # type: ignore[attr-defined]
    return model.image_embeddings(torch.from_numpy(tokens))


def joint_mot_prefill_feeds(model: torch.nn.Module, plan: object, embeds: list[ImageEmbedding]) -> dict[str, np.ndarray]:
    """The family's prefix plan -> prefill.onnx feeds: the image tokens in camera order (1, Ni, W),
    the prompt ids (Nl,), and for pi0 the normalized state (state_dim,) (its own stream)."""
    feeds = {"image_embeds": np.concatenate([e.tokens.numpy() for e in embeds])[None],
             "input_ids": np.asarray(plan.ids, dtype=np.int64)}  # type: ignore[attr-defined]
    if model.spec.variant == "pi0":
        feeds["state"] = plan.state_norm.float().numpy()  # type: ignore[attr-defined]
    return feeds
