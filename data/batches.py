"""From images and captions to the tensors a decoder trains on.

A vision-language model here is trained as a plain language model whose input starts with visual tokens:

    [visual tokens] Caption: a red circle<|endoftext|>
    [visual tokens] Question: what colour is the circle? Answer: red<|endoftext|>

Only the text after the prompt is learned. `VLMCollator` builds, for a list of `Sample`s:

    input_ids       prompt tokens + target tokens + eos, right-padded with pad_id       LongTensor [B, T]
    attention_mask  1 on real tokens, 0 on padding                                      LongTensor [B, T]
    labels          input_ids on the target tokens and the eos, -100 elsewhere          LongTensor [B, T]

A target longer than `max_target_tokens` is cut there and gets no eos: the model must not learn to stop mid-sentence.
    image_index     which image each row belongs to                                     LongTensor [B]

Images are not loaded here: the frozen encoder's features of every image are computed once and cached
(`vision/cache.py`), and the training loop gathers a batch's features by `image_index`.

`labels` are aligned with `input_ids` (not shifted), as in Hugging Face models: the loss must compare the
logits at position t with labels[t + 1]. -100 is `torch.nn.functional.cross_entropy`'s default
`ignore_index`, so prompt and padding positions add nothing to the loss. The visual tokens are prepended by
the model, not here (the bridge decides how many there are).

Prompts and targets are tokenised separately and without the tokenizer's special-token post-processing
(`add_special_tokens=False`): we add the eos ourselves, and generation encodes exactly the same prompt
tokens (`encode_prompts`). The target starts with a space (" red") because byte-level BPE tokenizers attach
the space to the following word ("Ġred"), which is how the word appears in running text.

`batch_order` gives each epoch a deterministic shuffled order with length bucketing: samples of similar
length share a batch, so little compute is spent on padding (as in fairseq and nanoVLM).

Read next: `training/step.py` (the step that consumes these batches), then `training/loop.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Tokenizer

from errors import UserError

from .records import ImageRecord

CAPTION_PROMPT = "Caption:"
TASKS = ("caption", "qa")
IGNORE_INDEX = -100  # the label value cross_entropy skips


def question_prompt(question: str) -> str:
    """The prompt for a question; the model continues it with " <answer>"."""
    return f"Question: {question} Answer:"


@dataclass
class Sample:
    """One training example: an image (by index into the records list), a prompt and the text to learn."""

    image_index: int
    prompt: str
    target: str
    task: str  # "caption" or "qa"


def make_samples(records: Sequence[ImageRecord], tasks: Sequence[str] = TASKS) -> list[Sample]:
    """Every (image, caption) pair and every (image, question) pair of `records`, as `Sample`s."""
    unknown = set(tasks) - set(TASKS)
    if unknown or not tasks:
        raise UserError(f"unknown tasks {sorted(unknown) or list(tasks)}; accepted: {', '.join(TASKS)}")
    samples = []
    for i, record in enumerate(records):
        if "caption" in tasks:
            samples.extend(Sample(i, CAPTION_PROMPT, " " + caption, "caption") for caption in record.captions)
        if "qa" in tasks:
            samples.extend(Sample(i, question_prompt(q), " " + a, "qa") for q, a in record.qa)
    return samples


def encode_prompts(tokenizer: Tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt, exactly as the collator encodes them in training (for generation)."""
    return [e.ids for e in tokenizer.encode_batch(list(prompts), add_special_tokens=False)]


def pack(prompts: Sequence[list[int]], targets: Sequence[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Rows of [prompt][target], right-padded to the longest: `input_ids`, `labels` (the target tokens; -100 on the
    prompt and the padding, so the loss reads the target only) and `attention_mask` (1 on real tokens), each [B, T]."""
    rows = [p + t for p, t in zip(prompts, targets, strict=True)]
    label_rows = [[IGNORE_INDEX] * len(p) + t for p, t in zip(prompts, targets, strict=True)]
    width = max((len(r) for r in rows), default=0)

    def padded(lists: list[list[int]], fill: int) -> torch.Tensor:  # one tensor from Python lists: [B, T]
        return torch.tensor([x + [fill] * (width - len(x)) for x in lists], dtype=torch.long).view(len(lists), width)

    return {
        "input_ids": padded(rows, pad_id),
        "attention_mask": padded([[1] * len(r) for r in rows], 0),
        "labels": padded(label_rows, IGNORE_INDEX),
    }


class VLMCollator:
    """Turns a list of `Sample`s into padded tensors (see the module docstring for the layout)."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        eos_id: int,
        pad_id: int,
        max_target_tokens: int = 64,
    ):
        if max_target_tokens < 1:
            raise UserError(f"max_target_tokens must be at least 1, got {max_target_tokens}")
        self.tokenizer = tokenizer
        self.eos_id = eos_id
        self.pad_id = pad_id
        self.max_target_tokens = max_target_tokens
        self._ids: dict[str, list[int]] = {}  # text -> token ids, memoised (see _encode)

    def __call__(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        """Collate `samples` into one right-padded batch."""
        prompts = self._encode([s.prompt for s in samples])
        targets = self._encode([s.target for s in samples])

        batch = pack(prompts, [self.target_ids(t) for t in targets], self.pad_id)
        batch["image_index"] = torch.tensor([s.image_index for s in samples], dtype=torch.long)  # [B]
        return batch

    def target_ids(self, ids: list[int]) -> list[int]:
        """A target's tokens as learned: the whole text and the end-of-text token, so the model learns to stop; or,
        when the text is longer than `max_target_tokens`, its first `max_target_tokens` tokens and no end-of-text.
        (Ending a cut text with end-of-text would teach the model to stop mid-sentence.)"""
        return ids + [self.eos_id] if len(ids) <= self.max_target_tokens else ids[: self.max_target_tokens]

    def count_cut(self, samples: Sequence[Sample]) -> int:
        """How many of `samples`' targets are longer than `max_target_tokens` (tokenising them all once; the ids are
        remembered for the batches)."""
        return sum(len(ids) > self.max_target_tokens for ids in self._encode([s.target for s in samples]))

    def _encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text. Memoised: the same prompts come in every batch, and every text in every epoch."""
        new = list(dict.fromkeys(t for t in texts if t not in self._ids))
        if new:
            self._ids.update(zip(new, encode_prompts(self.tokenizer, new), strict=True))
        return [self._ids[t] for t in texts]


def batch_order(
    lengths: Sequence[int],
    batch_size: int,
    seed: int,
    epoch: int,
    bucket: bool = True,
    drop_last: bool = False,
    bucket_width: int = 32,
) -> list[list[int]]:
    """Sample indices grouped into batches, in a shuffled order fixed by (seed, epoch).

    Every index appears exactly once per epoch (unless `drop_last` drops the incomplete batches). With
    `bucket=True` the shuffled indices are cut into chunks of 50 batches; within a chunk, samples are grouped by
    length band (`length // bucket_width`, in the unit of `lengths`), the bands are cut into batches, and the
    batches are shuffled: batches hold samples of similar length (little padding) while the order stays random.

    Why bands and not an exact sort: the samples of one template ("Question: is there a star? Answer: no") all
    have the same length, so sorting by exact length fills each batch with one kind of question. Every step then
    pulls the model towards one task, and learning slows a lot (a 2-block demo decoder after one epoch: question-
    answering exact match 0.46 with exact sorting, 0.59 with length bands, 0.66 with unsorted batches). Within a band the order is random, so a
    batch mixes tasks and templates; the padding it costs is below `bucket_width`.
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    rng = np.random.default_rng([seed, epoch])  # one stream per (seed, epoch): reproducible, new each epoch
    order = rng.permutation(len(lengths))
    if bucket:
        length_of = np.asarray(lengths)
        chunk = 50 * batch_size
        batches = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(length_of[part] // max(bucket_width, 1), kind="stable")]  # random within a band
            batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    else:
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if drop_last:
        batches = [b for b in batches if len(b) == batch_size]
    return [batches[i].tolist() for i in rng.permutation(len(batches))]
