"""Prompt assembly (Qwen chat format, Alpamayo-R1 / Alpamayo 1.5 layout):

    <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n
    per image, camera-major: [{camera name}: ] [frame {k} ] <|vision_start|> <|image_pad|> x n <|vision_end|>
    <|traj_history_start|> 48 history tokens <|traj_history_end|>
    [<|route_start|>{navigation}<|route_end|>] {instruction}<|im_end|>\n
    <|im_start|>assistant\n<|cot_start|>

The bracketed parts are Alpamayo 1.5's (`prompt.camera_labels`, `prompt.frame_numbers`,
`prompt.navigation`). The chat template concatenates the message's text items and the tokenizer
then sees each run of text between two special tokens as one string, so the text here is joined
the same way before it is encoded (e.g. "user\\nFront camera: frame 0 " is one span).

The assistant turn is left open with the reasoning-start token: reasoning decode continues from
there; the action expert attends to the whole prompt (and any reasoning) through the cache.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vla_ros.model.text_tokenizer import TextTokenizer

MAX_NAVIGATION_TOKENS = 512  # a longer instruction is refused (bounded prompt and cache)


class PromptInputError(ValueError):
    """The caller's camera ids or navigation text cannot go into this model's prompt."""


class NavigationPromptError(PromptInputError):
    """The navigation text cannot go into this model's prompt (the cameras could)."""


@dataclass(frozen=True)
class Prompt:
    input_ids: torch.Tensor  # (1, L) int64
    mm_token_type_ids: torch.Tensor  # (1, L) int32: 1 at image placeholder tokens, else 0

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])


def camera_name(index: int, names: Sequence[str]) -> str:
    """The display name of camera `index` (Alpamayo 1.5: "Camera {index}" beyond the known names)."""
    return names[index] if 0 <= index < len(names) else f"Camera {index}"


class PromptBuilder:
    def __init__(self, tokenizer: TextTokenizer) -> None:
        self.tok = tokenizer
        self._spans: dict[str, list[int]] = {}  # text span -> ids (all but the navigation repeat every tick)

    def _encode(self, text: str) -> list[int]:
        ids = self._spans.get(text)
        if ids is None:
            ids = self._spans[text] = self.tok.encode(text)
        return ids

    def _navigation_ids(self, text: str) -> list[int]:
        ids = self.tok.encode(text)
        smuggled = sorted({self.tok.tokenizer.id_to_token(i) for i in ids if i in self.tok.added_ids})
        if smuggled:
            raise NavigationPromptError(f"the navigation instruction contains special tokens {smuggled}")
        if len(ids) > MAX_NAVIGATION_TOKENS:
            raise NavigationPromptError(f"the navigation instruction is {len(ids)} tokens long "
                                        f"(at most {MAX_NAVIGATION_TOKENS})")
        return ids

    def build(self, num_images: int, tokens_per_image: int, history_bins: np.ndarray, *,
              camera_ids: Sequence[int] | None = None, navigation: str | None = None) -> Prompt:
        """num_images camera-major (camera_ids: one index per camera, needed when the prompt labels
        cameras or numbers frames); navigation: the route text (prompts with `prompt.navigation`),
        None or blank for none."""
        ids, p = self.tok.ids, self.tok.prompt
        seq: list[int] = []
        types: list[int] = []
        text: list[str] = []  # pending text, encoded as one span at the next special token

        def special(token: int, n: int = 1, kind: int = 0) -> None:
            if text:
                span = self._encode("".join(text))
                seq.extend(span)
                types.extend([0] * len(span))
                text.clear()
            seq.extend([token] * n)
            types.extend([kind] * n)

        special(ids.im_start)
        text.append("system\n" + p.system)
        special(ids.im_end)
        text.append("\n")
        special(ids.im_start)
        text.append("user\n")
        frames = None
        if p.needs_camera_ids:
            if camera_ids is None:
                raise PromptInputError("this model's prompt names each camera: give every camera's index (camera_ids)")
            if num_images % max(len(camera_ids), 1) or not camera_ids:
                raise PromptInputError(f"{len(camera_ids)} camera ids for {num_images} images")
            frames = num_images // len(camera_ids)
        for i in range(num_images):
            if frames is not None:
                cam, k = int(camera_ids[i // frames]), i % frames  # type: ignore[index]
                if k == 0 and p.camera_labels:
                    text.append(f"{camera_name(cam, p.camera_names)}: ")
                if p.frame_numbers:
                    text.append(f"frame {k} ")
            special(ids.vision_start)
            special(ids.image_pad, tokens_per_image, kind=1)
            special(ids.vision_end)
        special(ids.history_start)
        for b in np.asarray(history_bins).reshape(-1):
            special(ids.traj_first + int(b))
        special(ids.history_end)
        if p.navigation and navigation is not None and navigation.strip():
            route = self._navigation_ids(navigation)
            special(ids.route_start)  # type: ignore[arg-type]
            seq.extend(route)
            types.extend([0] * len(route))
            special(ids.route_end)  # type: ignore[arg-type]
        text.append(p.instruction)
        special(ids.im_end)
        text.append("\n")
        special(ids.im_start)
        text.append("assistant\n")
        special(ids.reasoning_start)
        return Prompt(input_ids=torch.tensor([seq], dtype=torch.long),
                      mm_token_type_ids=torch.tensor([types], dtype=torch.int32))
