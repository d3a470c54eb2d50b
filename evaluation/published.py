"""Published captioning results on Karpathy's test splits, printed above ours: the table `--test` shows and keeps.

A number means little alone: 30 BLEU-4 on Flickr30k is good, on COCO it is not. So `--test` on a Karpathy test split
of COCO or Flickr30k puts our row under rows from published work on the same images and metrics, each labelled by what
trains, how captions were decoded and which evaluation code scored them, with the conditions that differ (encoder,
language model, training data, epochs) said plainly: these rows are context, not a controlled comparison.

    table = comparison_table("flickr30k", "karpathy", metrics, test_protocol, encoder="vit",
                             decoder="Qwen/Qwen3-0.6B-Base", top_k=3, decoder_blocks=28, train_images=29_000, epochs=3)
    print(format_table(table))      # None above when no published row uses that dataset and split

Scale: papers print every score x100 (BLEU-4 0.251 is "25.1"); our metrics are fractions everywhere else (metrics.json,
W&B). The table shows ours x100 too, so the columns compare, and `comparison_table`'s data says so ("scale": 100).

Every published number below was checked against a source named in its row (`source`); what could not be re-checked
says so there. docs/evaluation.md has the same rows.

Read next: docs/evaluation.md ("Comparing with published results").
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import PurePath
from typing import Any

from evaluation.protocol import EvalProtocol

SCALE = 100  # published scores are x100; so are ours in this table

# The metrics these papers report on the same split, as (our key, the papers' name). Ours has more (bleu1..3, rouge_l:
# metrics.json); a column a row lacks prints as "-".
COLUMNS: tuple[tuple[str, str], ...] = (
    ("bleu4", "B@4"),
    ("meteor", "METEOR"),
    ("cider_d", "CIDEr"),
    ("spice", "SPICE"),
)

ENCODERS = {"vit": "timm ViT-B/16", "clip": "CLIP ViT-B/32 (open_clip)", "tiny": "the demo's tiny ViT"}


@dataclass(frozen=True)
class ResultRow:
    """One row of the table: who, what trains, how captions were decoded, what scored them, and the scores (x100)."""

    model: str
    trains: str  # what learns during training, and what stays frozen
    decoding: str  # "greedy", "beam 5", or "not stated" (then `note` says more)
    evaluation: str  # the evaluation code that computed the scores
    scores: Mapping[str, float]  # x100, keyed like `metrics.caption_metrics`: "bleu4", "meteor", "cider_d", "spice"
    conditions: str  # encoder, language model, training data, epochs
    source: str = ""  # where the numbers are (empty for ours)
    note: str = ""  # anything a reader comparing with this row should know


_CLIPCAP_SOURCE = (
    "Mokady et al. 2021, ClipCap, arXiv 2111.09734, its COCO results table (as listed for the paper on Papers with "
    "Code); the evaluation code per the authors in github.com/rmokady/CLIP_prefix_caption/issues/38"
)
_CLIPCAP_DECODING = "the paper does not say with its table; the released code offers greedy and beam search (5 beams)"

PUBLISHED: dict[str, tuple[ResultRow, ...]] = {
    "coco": (
        ResultRow(
            model="ClipCap, transformer mapper (Mokady et al. 2021)",
            trains="the transformer mapping network only (CLIP and GPT-2 frozen)",
            decoding="not stated",
            evaluation="Oscar's evaluation code (the COCO caption evaluation code)",
            scores={"bleu4": 33.53, "meteor": 27.45, "cider_d": 113.08, "spice": 21.05},
            conditions="CLIP ViT-B/32 + GPT-2 (124M), both frozen; COCO's Karpathy training split (Oscar's copy); "
            "10 epochs (the released code's default)",
            source=_CLIPCAP_SOURCE,
            note=f"decoding: {_CLIPCAP_DECODING}. A public reproduction with the released code reports B@4 31.0, "
            "METEOR 27.1, CIDEr 105.7, SPICE 20.4 (github.com/rmokady/CLIP_prefix_caption/issues/38)",
        ),
        ResultRow(
            model="ClipCap, MLP mapper + GPT-2 tuned (Mokady et al. 2021)",
            trains="the MLP mapping network and all of GPT-2 (CLIP frozen)",
            decoding="not stated",
            evaluation="Oscar's evaluation code (the COCO caption evaluation code)",
            scores={"bleu4": 32.15, "meteor": 27.1, "cider_d": 108.35, "spice": 20.12},
            conditions="CLIP ViT-B/32 (frozen) + GPT-2 (124M, fine-tuned); COCO's Karpathy training split (Oscar's "
            "copy); 10 epochs (the released code's default)",
            source=_CLIPCAP_SOURCE,
            note=f"decoding: {_CLIPCAP_DECODING}",
        ),
    ),
    "flickr30k": (
        ResultRow(
            model="adaptive attention (Lu et al. 2017)",
            trains="everything: an LSTM decoder with adaptive attention from scratch, the ResNet-152 CNN fine-tuned "
            "in a second stage",
            decoding="beam 3",
            evaluation="the COCO caption evaluation code",
            scores={"bleu4": 25.1, "cider_d": 53.1},
            conditions="ResNet-152 (ImageNet) + an LSTM trained from scratch; Flickr30k's Karpathy training split "
            "(29,000 images); epochs not re-checked here",
            source="Lu et al. 2017, 'Knowing When to Look', https://arxiv.org/abs/1612.01887, its Flickr30k table; "
            "BLEU-4 0.251 is also quoted by a reimplementation's README; CIDEr 0.531 and the beam size (3) not "
            "re-checked here",
        ),
        ResultRow(
            model="Unified VLP (Zhou et al. 2020)",
            trains="everything: a 12-layer transformer (BERT-base size, from UniLM), pre-trained on Conceptual "
            "Captions, then fine-tuned; the region detector frozen",
            decoding="beam 5",
            evaluation="coco-caption (the COCO caption evaluation code, a submodule of its repository)",
            scores={"bleu4": 30.1, "meteor": 23.0, "cider_d": 67.4, "spice": 17.0},
            conditions="Detectron region features (Visual Genome) + a BERT-base-size transformer; pre-trained on "
            "Conceptual Captions (3M images), fine-tuned 30 epochs on Flickr30k's Karpathy training split",
            source="Zhou et al. 2020, https://arxiv.org/abs/1909.11059; the numbers, beam 5 on the test split and "
            "the 30 epochs from github.com/LuoweiZhou/VLP's README (Papers with Code lists the same numbers)",
        ),
    ),
}


def published_rows(dataset: str, split: str) -> tuple[ResultRow, ...]:
    """The published rows on `dataset`'s ("coco", "flickr30k") test split under `split`: none unless it is Karpathy's.

    `dataset` is what loading found (`data.records.LoadReport.dataset`), `split` the split scheme the model was
    trained with ("karpathy" or "random"): a random split's test images are not the ones the papers scored.
    """
    return PUBLISHED.get(dataset, ()) if split == "karpathy" else ()


def _evaluation_code(tokenizer: str) -> str:
    version = importlib.metadata.version("pycocoevalcap")
    if tokenizer == "ptb":
        return f"pycocoevalcap {version} (the COCO caption evaluation code), its Java PTB tokenizer"
    return f"pycocoevalcap {version}'s scorers on a Python PTB-like tokenizer (--ptb: the published tokenisation)"


def _decoding(protocol: EvalProtocol) -> str:
    return f"beam {protocol.beams}" if protocol.beams > 1 else "greedy"


def our_row(
    metrics: Mapping[str, float],
    protocol: EvalProtocol,
    *,
    encoder: str,
    decoder: str,
    top_k: int,
    decoder_blocks: int,
    train_images: int,
    epochs: int,
) -> ResultRow:
    """Our row: `metrics` x100 (rounded to 2 decimals), labelled from the run's settings and the test's protocol."""
    trains = f"the bridge and the top {top_k} of {decoder_blocks} decoder blocks" if top_k else "the bridge only"
    language_model = PurePath(decoder).name or decoder  # "Qwen/Qwen3-0.6B-Base" -> "Qwen3-0.6B-Base"; local folders
    frozen = "the encoder and the rest of the decoder frozen" if top_k else "the encoder and the decoder frozen"
    return ResultRow(
        model="ours",
        trains=f"{trains} ({frozen})",
        decoding=_decoding(protocol),
        evaluation=_evaluation_code(protocol.tokenizer),
        scores={key: round(SCALE * metrics[key], 2) for key, _ in COLUMNS if key in metrics},
        conditions=f"frozen {ENCODERS.get(encoder, encoder)} + {language_model}; {train_images:,} training images; "
        f"{epochs} epoch{'s' if epochs != 1 else ''}",
        note=f"{protocol.images:,} test images" + (f"; {protocol.decoding}" if protocol.beams > 1 else ""),
    )


def comparison_table(
    dataset: str,
    split: str,
    metrics: Mapping[str, float],
    protocol: EvalProtocol,
    *,
    encoder: str,
    decoder: str,
    top_k: int,
    decoder_blocks: int,
    train_images: int,
    epochs: int,
) -> dict[str, Any] | None:
    """The table as data, for metrics.json: the published rows on this dataset and split, then ours. None when no
    published row uses them (not COCO or Flickr30k, or not Karpathy's split).

    `metrics` are `evaluate`'s (fractions); `protocol` the test's (`evaluation.protocol.protocol`); the keywords
    describe the run: its encoder name ("vit"), decoder source, top-K, the decoder's block count, the number of
    training images and the epochs the checkpoint trained.
    """
    rows = published_rows(dataset, split)
    if not rows:
        return None
    ours = our_row(metrics, protocol, encoder=encoder, decoder=decoder, top_k=top_k, decoder_blocks=decoder_blocks,
                   train_images=train_images, epochs=epochs)  # fmt: skip
    return {
        "dataset": dataset,
        "split": f"{split} test",
        "scale": SCALE,
        "columns": [key for key, _ in COLUMNS],
        "rows": [asdict(row) for row in (*rows, ours)],
        "note": conditions_note(),
    }


def conditions_note() -> str:
    """The line under the table: what differs between the rows, and the scale."""
    return (
        "the rows differ in encoder, language model, training data and epochs (each row's conditions above), and "
        f"some in decoding and evaluation code: context, not a controlled comparison. Scores x{SCALE}, ours too "
        "(metrics.json keeps our metrics as fractions)"
    )


def _cell(value: float | None) -> str:
    return "-" if value is None else repr(float(value))  # as published: 27.1 stays "27.1", 113.08 "113.08"


def format_table(table: Mapping[str, Any]) -> str:
    """`comparison_table`'s data for the terminal: the scores, then for each row what trains, what scored it and
    under which conditions, then the note. The sources are in the data (metrics.json) and docs/evaluation.md."""
    names = dict(COLUMNS)
    rows = table["rows"]
    width = max(len(row["model"]) for row in rows)
    decoding = max(len("decoding"), *(len(row["decoding"]) for row in rows))
    header = f"{'':{width}}  {'decoding':{decoding}}" + "".join(f"  {names[key]:>7}" for key in table["columns"])
    lines = [f"{table['dataset']}, {table['split']} split: published results and ours (x{table['scale']})", header]
    for row in rows:
        cells = "".join(f"  {_cell(row['scores'].get(key)):>7}" for key in table["columns"])
        lines.append(f"{row['model']:{width}}  {row['decoding']:{decoding}}{cells}")
    for row in rows:
        lines += [f"  {row['model']}", f"    trains:     {row['trains']}", f"    scored by:  {row['evaluation']}",
                  f"    conditions: {row['conditions']}"]  # fmt: skip
        if row["note"]:
            lines.append(f"    note:       {row['note']}")
    lines.append(f"note: {table['note']}")
    return "\n".join(lines)


__all__ = ["COLUMNS", "PUBLISHED", "ResultRow", "comparison_table", "format_table", "our_row", "published_rows"]
