"""The text tokenizer: a `tokenizers` tokenizer.json plus the ids of the special tokens.

Random presets get a deterministic byte-level tokenizer built in code (256 byte tokens, no merges)
with the chat, vision, history and reasoning special tokens and `history.bins` discrete
trajectory tokens; a real checkpoint brings its own tokenizer.json with the same token names.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tokenizers.pre_tokenizers import ByteLevel

from vla_ros.model.config import PromptConfig


class TokenizerError(ValueError):
    """tokenizer.json is missing or lacks a special token the model config names."""


@dataclass(frozen=True)
class SpecialIds:
    image_pad: int
    video_pad: int
    vision_start: int
    vision_end: int
    im_start: int
    im_end: int
    history_start: int
    history_end: int
    reasoning_start: int
    reasoning_end: int
    future_start: int
    traj_first: int  # id of traj token 0; traj tokens are contiguous [traj_first, traj_first + bins)
    traj_count: int
    route_start: int | None = None  # the navigation span's delimiters (None: not in the tokenizer)
    route_end: int | None = None


def special_token_names(prompt: PromptConfig) -> list[str]:
    return [prompt.im_start, prompt.im_end, prompt.vision_start, prompt.vision_end, prompt.image_pad,
            prompt.video_pad, prompt.history_start, prompt.history_end, prompt.reasoning_start,
            prompt.reasoning_end, prompt.future_start]


def build_byte_tokenizer(prompt: PromptConfig, traj_bins: int) -> Tokenizer:
    """Deterministic byte-level tokenizer: ids 0..255 bytes, then specials, then traj tokens."""
    alphabet = sorted(ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(special_token_names(prompt))
    tok.add_special_tokens([prompt.traj_token_format.format(i) for i in range(traj_bins)])
    return tok


class TextTokenizer:
    """encode/decode text and the special ids the prompt assembly and decoding need."""

    def __init__(self, tokenizer: Tokenizer, prompt: PromptConfig, traj_bins: int) -> None:
        self.tokenizer = tokenizer
        self.prompt = prompt

        def need(name: str) -> int:
            idx = tokenizer.token_to_id(name)
            if idx is None:
                raise TokenizerError(f"tokenizer.json has no token {name!r} (named by the model config)")
            return idx

        traj_first = need(prompt.traj_token_format.format(0))
        for i in (1, traj_bins - 1):
            if need(prompt.traj_token_format.format(i)) != traj_first + i:
                raise TokenizerError("trajectory tokens must have contiguous ids")
        self.ids = SpecialIds(
            image_pad=need(prompt.image_pad), video_pad=need(prompt.video_pad),
            vision_start=need(prompt.vision_start), vision_end=need(prompt.vision_end),
            im_start=need(prompt.im_start), im_end=need(prompt.im_end),
            history_start=need(prompt.history_start), history_end=need(prompt.history_end),
            reasoning_start=need(prompt.reasoning_start), reasoning_end=need(prompt.reasoning_end),
            future_start=need(prompt.future_start), traj_first=traj_first, traj_count=traj_bins,
            route_start=need(prompt.route_start) if prompt.navigation else tokenizer.token_to_id(prompt.route_start),
            route_end=need(prompt.route_end) if prompt.navigation else tokenizer.token_to_id(prompt.route_end),
        )
        # Ids of every added token (specials, trajectory tokens): text from outside (a navigation
        # instruction) must not smuggle them into the prompt.
        self.added_ids = frozenset(tokenizer.get_added_tokens_decoder())

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def save(self, path: str | Path) -> None:
        self.tokenizer.save(str(path))

    @classmethod
    def load(cls, path: str | Path, prompt: PromptConfig, traj_bins: int) -> "TextTokenizer":
        p = Path(path)
        if not p.is_file():
            raise TokenizerError(f"tokenizer file '{p}' does not exist")
        try:
            tok = Tokenizer.from_file(str(p))
        except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
            raise TokenizerError(f"'{p}' is not a valid tokenizer.json: {exc}") from exc
        return cls(tok, prompt, traj_bins)
