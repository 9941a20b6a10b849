"""The drive-tiny text tokenizer: a small byte-level BPE trained with `tokenizers` on the label
grammar and the prompt text, followed by the special tokens and the trajectory tokens.

Ids: specials first, then `history.bins` trajectory tokens (contiguous, as TextTokenizer
requires), then the 256 byte symbols and the learned merges. Byte-level, so any text encodes.
"""
from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tokenizers.pre_tokenizers import ByteLevel

from vla_ros.model.config import PromptConfig
from vla_ros.model.text_tokenizer import TextTokenizer, special_token_names
from vla_ros.train.labels import grammar_corpus


def prompt_corpus(prompt: PromptConfig) -> list[str]:
    """The fixed text the prompt assembly encodes (see vla_ros.model.prompt)."""
    return ["system\n" + prompt.system, "\n", "user\n", prompt.instruction, "assistant\n"]


def train_bpe(prompt: PromptConfig, traj_bins: int, vocab_size: int = 512) -> TextTokenizer:
    """Deterministic: the same corpus and settings always give the same tokenizer.json."""
    specials = special_token_names(prompt) + [prompt.traj_token_format.format(i) for i in range(traj_bins)]
    tok = Tokenizer(models.BPE())
    # No regex split: phrases such as " curve ahead" may become single tokens (short sequences).
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=len(specials) + vocab_size, special_tokens=specials,
                                  initial_alphabet=ByteLevel.alphabet(), min_frequency=2, show_progress=False)
    corpus = grammar_corpus() + prompt_corpus(prompt) * 50
    tok.train_from_iterator(corpus, trainer=trainer)
    return TextTokenizer(tok, prompt, traj_bins)
