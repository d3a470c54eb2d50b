"""Train / validation / test splits, made by image and never by caption.

Each image has several captions. Splitting the (image, caption) pairs at random would put the same image in
training and in test, and the test score would measure memorisation, not captioning. So we split the images,
and every caption and question of an image goes where the image goes.

Three schemes:
- `auto` (train.py's default): `karpathy` when every image carries a split label and the labels make all three
  parts (Karpathy's json files, the hub's Flickr30k CSV, an imagefolder's split folders, a Parquet repo's splits),
  else `random`. So the first real numbers a
  user gets are on the published test split, comparable with papers, without a flag. (The demo asks for `random`.)
- `random`: shuffle the images with `numpy.random.default_rng(seed)` and cut 80 / 10 / 10.
  The images are sorted by id first, so the result depends only on the seed and the set of images, not on
  the order of the annotation file.
- `karpathy`: keep the layout's own labels. For Flickr30k this is the standard split of Karpathy & Fei-Fei
  2015 (https://arxiv.org/abs/1412.2306): 29,000 / 1,014 / 1,000 images, used by most published captioning
  results, so use it when comparing with papers. For COCO, Karpathy's 113,287 / 5,000 / 5,000 ("restval", which
  only COCO has, counts as train). An imagefolder's split folders and a dataset card's splits are labels too (the
  scheme's name is historical: it means "the data's own labels").

Read next: `data/batches.py` (a split's samples as tensors).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from errors import UserError

from .records import ImageRecord

SCHEMES = ("auto", "random", "karpathy")
# Where the Karpathy labels of Flickr30k and COCO come from, for the error when data has none.
KARPATHY_FILES = (
    "dataset_flickr30k.json or dataset_coco.json, in caption_datasets.zip from "
    "https://cs.stanford.edu/people/karpathy/deepimagesent/"
)
# The layouts' own labels, mapped onto our three splits.
_KARPATHY_LABELS = {"train": "train", "restval": "train", "val": "val", "dev": "val", "test": "test"}


@dataclass
class Splits:
    """Three disjoint lists of images."""

    train: list[ImageRecord]
    val: list[ImageRecord]
    test: list[ImageRecord]
    scheme: str = "random"  # how they were made: "random" or "karpathy" (what "auto" chose)

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train), len(self.val), len(self.test)


def split_records(records: list[ImageRecord], scheme: str = "random", seed: int = 0) -> Splits:
    """Split images into train / val / test with the `random` (80/10/10 from `seed`) or `karpathy` scheme, or `auto`:
    `karpathy` when every image has a known split label and they make train, val and test, else `random`."""
    if scheme == "auto":
        labels = {r.split for r in records}
        # The data's own split only when it makes all three parts: a hub repo with a train split alone, or with
        # labels of its own naming, is split at random.
        complete = None not in labels and labels <= set(_KARPATHY_LABELS)
        complete = complete and {_KARPATHY_LABELS[label] for label in labels} == {"train", "val", "test"}
        scheme = "karpathy" if complete else "random"
    if scheme == "random":
        ordered = sorted(records, key=lambda r: r.image_id)
        order = np.random.default_rng(seed).permutation(len(ordered))
        n_val = n_test = round(0.1 * len(ordered))
        shuffled = [ordered[i] for i in order]
        return Splits(
            train=shuffled[n_val + n_test :],
            val=shuffled[:n_val],
            test=shuffled[n_val : n_val + n_test],
            scheme="random",
        )
    if scheme == "karpathy":
        check_labels(records)
        parts: dict[str, list[ImageRecord]] = {"train": [], "val": [], "test": []}
        for record in records:
            parts[_KARPATHY_LABELS[record.split]].append(record)
        return Splits(**parts, scheme="karpathy")
    raise UserError(f"unknown split scheme {scheme!r}; accepted: {', '.join(SCHEMES)}")


def check_labels(records: list[ImageRecord]) -> None:
    """Refuse, in one line, records that the `karpathy` scheme cannot split: one without a label, or with a label
    that is not train, restval, val, dev or test. (`load_dataset` checks this before decoding any image.)"""
    for record in records:
        if record.split is None:
            raise UserError(
                f"split 'karpathy' needs the data's own split labels, but {record.path} has none (Kaggle's "
                "results.csv, COCO's official captions_*.json and an imagefolder without split folders carry "
                f"none); use split 'random', or put Karpathy's split file beside the images ({KARPATHY_FILES})"
            )
        if record.split not in _KARPATHY_LABELS:
            raise UserError(
                f"unknown split label {record.split!r} for image {record.image_id}; "
                f"accepted labels: {', '.join(_KARPATHY_LABELS)}"
            )
