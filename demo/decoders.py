"""The offline demo's pieces: a tiny Qwen3-shaped decoder and a tokenizer learned from the shapes set.

The real system needs three downloads (Qwen3-0.6B-Base, ViT/CLIP weights, Flickr30k). The demo needs none, and
still runs the *same* code path end to end in a few minutes on a laptop CPU:

- data: the generated shapes set (`data/shapes.py`), captions and questions that are true of the pixels;
- tokenizer: a byte-level BPE (like Qwen's) trained on the shapes text, a few hundred tokens;
- decoder: our Qwen3 class at a tiny size (3 blocks, d=128, MLP 256), randomly initialised, saved in the hub's
  format so it loads exactly like the real checkpoint;
- encoder: the tiny frozen ViT with random weights (`vision.build_encoder("tiny", "none")`), read through its
  hidden states: a 3x3 grid of patch tokens, one per cell of the grid the shapes are drawn on.

A random decoder stands in for a pretrained one, and two of its initial scales are changed for that:
- Its token embeddings are frozen (as the real model's are) and tied to the LM head, so they are drawn at a larger
  scale than the usual 0.02: an embedding matrix that learned language has well-separated rows, and a head built
  from near-zero rows could not make confident predictions at all.
- Its linear layers start at std 1/sqrt(width) (`initializer_range`), the usual fan-in scale. Qwen3's 0.02 is sized
  for a width of 1024 (1/sqrt(1024) = 0.031); at width 128 it is 4x too small, and the attention heads that must
  learn to look a shape up by its name ("what colour is the star?") then take epochs to get going. Measured on the
  demo with 4 blocks (2 epochs, batch 16): question answering exact match 0.56 with std 0.02, 0.84 with
  1/sqrt(128).

Read next: `demo/report.py` (the demo's verdict), `demo/pretrain.py` (this decoder pretrained on the text).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from data import CAPTION_PROMPT, ImageRecord, question_prompt
from tiny_decoder import Qwen3Config, Qwen3ForCausalLM
from weights_loader import TextTokenizer

from .tokenizer import EOS_TOKEN, train_bpe_tokenizer

DEMO_VOCAB_SIZE = 512
EMBEDDING_STD = 0.1


def demo_tokenizer(
    records: Sequence[ImageRecord], vocab_size: int = DEMO_VOCAB_SIZE, extra_texts: Sequence[str] = ()
) -> TextTokenizer:
    """A BPE tokenizer trained on every caption, question, answer and prompt of the shapes set (and `extra_texts`:
    the pretrained demo LM's weather reports, demo/weather.py)."""
    texts = [CAPTION_PROMPT, *extra_texts]
    for record in records:
        texts.extend(" " + c for c in record.captions)
        for question, answer in record.qa:
            texts.extend([question_prompt(question), " " + answer])
    tokenizer = train_bpe_tokenizer(texts, vocab_size=vocab_size)
    eos = tokenizer.token_to_id(EOS_TOKEN)
    return TextTokenizer(tokenizer, eos_id=eos, pad_id=eos)


def demo_config(vocab_size: int = DEMO_VOCAB_SIZE, eos_id: int | None = None) -> Qwen3Config:
    """The demo decoder's shape: Qwen3-0.6B's architecture scaled down to 3 blocks of width 128."""
    return Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=128,
        # MLP 2x the width (Qwen3: 3x). The MLP is most of a block's arithmetic; with 384 the demo took 252 s and
        # reached question-answering exact match 0.85, with 256 it took 212 s and reached 0.92 (one run each, when
        # the shapes set still asked "is there a X?" of all four kinds).
        intermediate_size=256,
        num_hidden_layers=3,  # the top 2 train in the demo; the bottom one stays frozen, as in the real model
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=512,
        rope_theta=10_000.0,
        initializer_range=128**-0.5,  # fan-in scale for width 128 (see the module docstring)
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )


def demo_decoder(vocab_size: int, eos_id: int, seed: int = 0) -> Qwen3ForCausalLM:
    """A 3-block, d=128 Qwen3 with random weights (the architecture of Qwen3-0.6B, scaled down)."""
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(demo_config(vocab_size, eos_id))
    torch.nn.init.normal_(model.model.embed_tokens.weight, std=EMBEDDING_STD)
    return model
