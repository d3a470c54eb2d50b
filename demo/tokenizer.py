"""A tiny byte-level BPE tokenizer, trained in a second on the demo's own text.

Qwen3's tokenizer is a byte-level BPE with 151,643 merges learned from trillions of tokens (Sennrich et al.
2016, https://arxiv.org/abs/1508.07909; byte-level as in GPT-2, Radford et al. 2019). The offline demo trains
a small decoder from scratch on the shapes set, whose whole vocabulary is a few dozen words, so a 151k-row
embedding would be almost all waste. Instead we train the same kind of tokenizer, with the `tokenizers`
library, on the demo's captions and questions:

- byte-level pre-tokenization: text is split GPT-2 style and every byte is mapped to a printable
  character, so any string (any language, any emoji) can be encoded without an unknown token;
- BPE merges learned from the given texts until the vocabulary reaches `vocab_size`;
- one special token, `<|endoftext|>` (id 0), used as end-of-text and padding, as in Qwen3-Base.

Reference: https://huggingface.co/docs/tokenizers/quicktour

Read next: `demo/decoders.py` (the demo's tokenizer is trained here), `weights_loader.py` (Qwen3's own).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from errors import UserError

EOS_TOKEN = "<|endoftext|>"
# 256 single bytes + the special token: a smaller vocabulary could not encode every byte.
MIN_VOCAB_SIZE = 257


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> Tokenizer:
    """Train a byte-level BPE on `texts`, with `<|endoftext|>` as its only special token (eos and pad)."""
    if vocab_size < MIN_VOCAB_SIZE:
        raise UserError(f"vocab_size must be at least {MIN_VOCAB_SIZE} (256 bytes + {EOS_TOKEN}), got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen in the texts or not
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer
