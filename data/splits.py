"""Train / validation / test splits, made by image and never by caption.

Each image has several captions. Splitting the (image, caption) pairs at random would put the same image in
training and in test, and the test score would measure memorisation, not captioning. So we split the images,
and every caption and question of an image goes where the image goes.

Two schemes:
- `random` (the default): shuffle the images with `numpy.random.default_rng(seed)` and cut 80 / 10 / 10.
  The images are sorted by id first, so the result depends only on the seed and the set of images, not on
  the order of the annotation file.
- `karpathy`: keep the layout's own labels. For Flickr30k this is the standard split of Karpathy & Fei-Fei
  2015 (https://arxiv.org/abs/1412.2306): 29,000 / 1,014 / 1,000 images, used by most published captioning
  results, so use it when comparing with papers. ("restval", which only COCO has, counts as train.)

Read next: `data/batches.py` (a split's samples as tensors).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from errors import UserError

from .records import ImageRecord

SCHEMES = ("random", "karpathy")
# The layouts' own labels, mapped onto our three splits.
_KARPATHY_LABELS = {"train": "train", "restval": "train", "val": "val", "dev": "val", "test": "test"}


@dataclass
class Splits:
    """Three disjoint lists of images."""

    train: list[ImageRecord]
    val: list[ImageRecord]
    test: list[ImageRecord]

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train), len(self.val), len(self.test)


def split_records(records: list[ImageRecord], scheme: str = "random", seed: int = 0) -> Splits:
    """Split images into train / val / test with the `random` (80/10/10 from `seed`) or `karpathy` scheme."""
    if scheme == "random":
        ordered = sorted(records, key=lambda r: r.image_id)
        order = np.random.default_rng(seed).permutation(len(ordered))
        n_val = n_test = round(0.1 * len(ordered))
        shuffled = [ordered[i] for i in order]
        return Splits(
            train=shuffled[n_val + n_test :],
            val=shuffled[:n_val],
            test=shuffled[n_val : n_val + n_test],
        )
    if scheme == "karpathy":
        parts: dict[str, list[ImageRecord]] = {"train": [], "val": [], "test": []}
        for record in records:
            if record.split is None:
                raise UserError(
                    "split 'karpathy' needs split labels, but this layout has none (e.g. results.csv); "
                    "use split 'random' or a Karpathy dataset_flickr30k.json"
                )
            if record.split not in _KARPATHY_LABELS:
                raise UserError(
                    f"unknown split label {record.split!r} for image {record.image_id}; "
                    f"accepted labels: {', '.join(_KARPATHY_LABELS)}"
                )
            parts[_KARPATHY_LABELS[record.split]].append(record)
        return Splits(**parts)
    raise UserError(f"unknown split scheme {scheme!r}; accepted: {', '.join(SCHEMES)}")
