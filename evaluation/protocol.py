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

Read next: `checkpoints/__init__.py` (a run's checkpoints: the README's next stop), then `captioning/` (your images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from errors import UserError
from runtime.settings import setting

# Validation images per training epoch when --eval-images is not given. At Flickr30k scale on an H200 (BENCHMARKS.md):
# one retrieval gallery of 100 images x 500 captions = 50,000 pairs, 11.6 s at 4,329 pairs/s; 100 captions of at
# most 32 tokens, <= 7.5 s at the 428 tokens/s measured for generation at batch 8; the loss of 500 captions, < 1 s
# at the training rate (1,394 samples/s, forward and backward). Together <= 20 s, 17% of the 114 s training epoch
# (23% at the last epoch, whose shuffled-image control generates the captions a second time).
VAL_IMAGES_PER_EPOCH = 100


@dataclass(frozen=True)
class EvalOptions:
    """How an evaluation decodes and scores: the evaluation flags of train.py (`--beams` <-> `beams`, its help
    beside it; runtime/settings.py), held by the training configuration as a part (`TrainConfig.evaluation`).
    `--test` applies the ones typed on its command line to the checkpoint's (`training/config.py: test_config`)."""

    gallery_size: int = setting(100, "images per retrieval gallery (with all their captions)")
    max_new_tokens: int = setting(32, "longest generated caption or answer (answers: at most 8 tokens)")
    num_samples: int = setting(8, "sample images shown with generated and reference captions")
    beams: int = setting(
        1, "beam search with this many beams for evaluation captions (default 1: greedy); papers use 3-5"
    )
    length_penalty: float = setting(
        1.0, "beam search: score = sum of log-probs / length ** this (default 1: mean log-prob per token)"
    )
    ptb: bool = setting(
        False,
        "score BLEU/CIDEr on captions tokenised by pycocoevalcap's Java PTB tokenizer, as published results are "
        "(needs `java` on the PATH; default: a pure-Python approximation)",
    )
    meteor: bool = setting(
        True,
        "with --test: also score METEOR 1.5, as published results do (starts a Java VM, 5-10 s; skipped with one line "
        "without Java); --no-meteor for a quicker test (default: on)",
    )
    spice: bool = setting(
        False,
        "with --test: also score SPICE (needs Java 8 or 11, Stanford CoreNLP from pycocoevalcap's "
        "get_stanford_models, about 385 MB, and an 8 GB Java heap); when it cannot run, one line says why and the "
        "other metrics are reported",
    )

    def __post_init__(self) -> None:
        for key in ("gallery_size", "max_new_tokens", "beams"):
            if getattr(self, key) < 1:
                raise UserError(f"{key}={getattr(self, key)!r} is invalid; expected an integer >= 1")
        if self.num_samples < 0:
            raise UserError(f"num_samples={self.num_samples!r} is invalid; expected an integer >= 0")


@dataclass(frozen=True)
class EvalSettings(EvalOptions):
    """Every setting of one evaluation, in one object: `evaluate(model, records, features, tokenizer, settings)`:
    the options (`EvalOptions`) and what the run being evaluated fixes (its tasks, batch, target length, seed).

    Training builds it from its configuration (`TrainConfig.eval_settings`); so does `--test`, from the
    checkpoint's configuration and the evaluation flags typed on the command line.
    """

    tasks: tuple[str, ...] = ("caption", "qa")  # what to evaluate: captions and retrieval, and/or answers
    batch_size: int = 32
    max_target_tokens: int = 48  # longer reference text is truncated when its loss is measured
    seed: int = 0  # the shuffled-image control's permutation
    # An evaluation scores METEOR only when asked: `--test` asks (TrainConfig.eval_settings), each epoch's does not.
    meteor: bool = False


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
