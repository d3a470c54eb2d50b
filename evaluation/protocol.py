"""The evaluation protocol: which images, which galleries, which decoding, which tokenisation, said out loud.

Published numbers are only comparable under the same protocol, and the protocol has several knobs that change the
numbers a lot: captioning papers report Flickr30k's Karpathy test split (1,000 images) with beam search and the Java
PTB tokenisation of the COCO evaluation code; retrieval papers report the 1K-image gallery (1,000 images and their
5,000 captions ranked together; a gallery of 100 is much easier). So every evaluation prints one line with its
protocol and `metrics.json` records it beside the numbers.

Two protocols, chosen by cost (docs/evaluation.md, "Comparing with published results"):
- **`--test`: the full protocol.** Every test image (unless `--eval-images`), galleries of `--gallery-size`,
  the decoding and tokeniser asked for. The flags on the command line win over the values stored in the
  checkpoint (`training/config.py: test_config`); flags the user did not type keep the checkpoint's values.
- **After each training epoch: a fixed validation subset** of `VAL_IMAGES_PER_EPOCH` images (the first ones of
  the validation split, the same every epoch, so epochs are comparable), for the loss, generation and one retrieval
  gallery. Sized so that validation costs at most a quarter of a Flickr30k training epoch (the projection is in the
  docs/evaluation.md); `--eval-images N` changes it.

Which captioning metrics, by cost (metrics/captioning.py):
- **Every evaluation**: BLEU-1..4, ROUGE-L and CIDEr-D, pycocoevalcap's pure-Python scorers (milliseconds for 100
  images, about a second for 5,000).
- **`--test` adds METEOR** (`EvalSettings.meteor`): a Java program with a 2 GB heap that takes ~5 s to start on two
  cores, too much to pay every epoch for a number that moves with CIDEr-D. Without Java it is left out, in one line.
- **SPICE only when asked** (`EvalSettings.spice`, `--spice` with `--test`): Stanford CoreNLP parses every caption
  (minutes for a test split, cached afterwards), with an 8 GB heap, Java 8 or 11 and a separate ~385 MB download. A
  probe run on two captions decides whether it can run; when not, one line says why and how to fix it.

Read next: `checkpoints/__init__.py` (a run's checkpoints: the README's next stop), then `caption.py` (your images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

# Validation images per training epoch when --eval-images is not given. At Flickr30k scale on an H200 (BENCHMARKS.md):
# one retrieval gallery of 100 images x 500 captions = 50,000 pairs, 11.6 s at 4,329 pairs/s; 100 captions of at
# most 32 tokens, <= 7.5 s at the 428 tokens/s measured for generation at batch 8; the loss of 500 captions, < 1 s
# at the training rate (1,394 samples/s, forward and backward). Together <= 20 s, 17% of the 114 s training epoch
# (23% at the last epoch, whose shuffled-image control generates the captions a second time).
VAL_IMAGES_PER_EPOCH = 100


@dataclass(frozen=True)
class EvalSettings:
    """Every setting of one evaluation, in one object: `evaluate(model, records, features, tokenizer, settings)`.

    Training builds it from its configuration (`TrainConfig.eval_settings`); so does `--test`, from the
    checkpoint's configuration and the evaluation flags typed on the command line.
    """

    tasks: tuple[str, ...] = ("caption", "qa")  # what to evaluate: captions and retrieval, and/or answers
    batch_size: int = 32
    max_target_tokens: int = 48  # longer reference text is truncated when its loss is measured
    max_new_tokens: int = 32  # longest generated caption (answers: at most 8 tokens)
    gallery_size: int = 100  # images per retrieval gallery, with all their captions
    num_samples: int = 8  # sample images returned with their generated and reference captions
    beams: int = 1  # captions by beam search with this many beams (1: greedy)
    length_penalty: float = 1.0  # beam score = sum of log-probs / length ** length_penalty
    ptb: bool = False  # caption metrics on the Java PTB tokenizer's tokens (needs `java`)
    seed: int = 0  # the shuffled-image control's permutation
    meteor: bool = False  # also METEOR 1.5 (a JVM, ~5 s to start): `--test`'s evaluation, not each epoch's
    spice: bool = False  # also SPICE (CoreNLP, Java 8/11, 8 GB heap; probed first): only when asked, with --spice


@dataclass(frozen=True)
class EvalProtocol:
    """What one evaluation measured on; `describe()` is the log line, `to_dict()` goes into metrics.json."""

    split: str  # e.g. "karpathy test", "random validation"
    images: int
    captions: int
    gallery_size: int  # the images per retrieval gallery actually used (at most `images`)
    beams: int
    length_penalty: float
    max_new_tokens: int
    tokenizer: str  # "ptb" (pycocoevalcap's Java PTBTokenizer) or "python" (metrics.tokenize_caption)
    batch_size: int
    caption_metrics: str = "BLEU/CIDEr"  # the captioning metrics asked for (`caption_metric_names`)

    @property
    def decoding(self) -> str:
        if self.beams > 1:
            return f"beam search ({self.beams} beams, length penalty {self.length_penalty:g})"
        return "greedy"

    def describe(self) -> str:
        galleries = -(-self.images // self.gallery_size) if self.images else 0
        tokenizer = "Java PTB tokenizer" if self.tokenizer == "ptb" else "Python PTB-like tokenizer"
        return (
            f"protocol: {self.split} split, {self.images:,} images ({self.captions:,} captions); retrieval in "
            f"{galleries} {'gallery' if galleries == 1 else 'galleries'} of {self.gallery_size:,} images; captions by "
            f"{self.decoding}, at most "
            f"{self.max_new_tokens} tokens; {self.caption_metrics} on the {tokenizer}; batch {self.batch_size}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "decoding": self.decoding}


def caption_metric_names(settings: EvalSettings) -> str:
    """The captioning metrics `settings` asks for, in the COCO evaluation code's order, e.g. "BLEU-1..4/ROUGE-L/CIDEr-D".

    What was asked: a metric that cannot run here (METEOR without Java, SPICE without its requirements) is missing
    from the evaluation's metrics, with one line saying why.
    """
    names = ["BLEU-1..4", *(["METEOR"] if settings.meteor else []), "ROUGE-L", "CIDEr-D"]
    return "/".join(names + (["SPICE"] if settings.spice else []))


def protocol(settings: EvalSettings, split: str, records: Sequence) -> EvalProtocol:
    """The protocol of evaluating `records` (ImageRecords of `split`) with `settings`."""
    return EvalProtocol(
        split=split,
        images=len(records),
        captions=sum(len(r.captions) for r in records),
        gallery_size=min(settings.gallery_size, max(len(records), 1)),
        beams=settings.beams,
        length_penalty=settings.length_penalty,
        max_new_tokens=settings.max_new_tokens,
        tokenizer="ptb" if settings.ptb else "python",
        batch_size=settings.batch_size,
        caption_metrics=caption_metric_names(settings),
    )
