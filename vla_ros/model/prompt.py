"""Prompt assembly (Qwen chat format, Alpamayo-R1 layout):

    <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n
    (<|vision_start|> <|image_pad|> x n <|vision_end|>) per image, camera-major
    <|traj_history_start|> 48 history tokens <|traj_history_end|> {instruction}<|im_end|>\n
    <|im_start|>assistant\n<|cot_start|>

The assistant turn is left open with the reasoning-start token: reasoning decode continues from
there; the action expert attends to the whole prompt (and any reasoning) through the cache.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vla_ros.model.text_tokenizer import TextTokenizer


@dataclass(frozen=True)
class Prompt:
    input_ids: torch.Tensor  # (1, L) int64
    mm_token_type_ids: torch.Tensor  # (1, L) int32: 1 at image placeholder tokens, else 0

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])


class PromptBuilder:
    def __init__(self, tokenizer: TextTokenizer) -> None:
        self.tok = tokenizer
        ids, p = tokenizer.ids, tokenizer.prompt
        # Text pieces encoded once; only the image count/size and the history change per tick.
        self._head = [ids.im_start, *tokenizer.encode("system\n" + p.system), ids.im_end,
                      *tokenizer.encode("\n"), ids.im_start, *tokenizer.encode("user\n")]
        self._tail = [*tokenizer.encode(p.instruction), ids.im_end, *tokenizer.encode("\n"), ids.im_start,
                      *tokenizer.encode("assistant\n"), ids.reasoning_start]

    def build(self, num_images: int, tokens_per_image: int, history_bins: np.ndarray) -> Prompt:
        ids = self.tok.ids
        seq: list[int] = list(self._head)
        types: list[int] = [0] * len(seq)
        for _ in range(num_images):
            seq += [ids.vision_start] + [ids.image_pad] * tokens_per_image + [ids.vision_end]
            types += [0] + [1] * tokens_per_image + [0]
        hist = [ids.traj_first + int(b) for b in np.asarray(history_bins).reshape(-1)]
        tail = [ids.history_start, *hist, ids.history_end, *self._tail]
        seq += tail
        types += [0] * len(tail)
        return Prompt(input_ids=torch.tensor([seq], dtype=torch.long),
                      mm_token_type_ids=torch.tensor([types], dtype=torch.int32))
