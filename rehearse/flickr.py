"""A folder in Flickr30k's layout: Karpathy's `dataset_flickr30k.json` beside `flickr30k_images/`.

    flickr30k/
        dataset_flickr30k.json    {"dataset": "flickr30k", "images": [{"filename", "imgid", "split",
                                   "sentences": [{"raw", "tokens", "imgid", "sentid"}], "sentids"}, ...]}
        flickr30k_images/         1000092795.jpg, ...  (JPEG, 4:3 and 3:4 like Flickr's photos, but small)

`data.load_dataset` detects it as Flickr30k with Karpathy's split (train, val and test labels), as it would the
real 31,783 images. Each image has five captions, as in Flickr30k, whose lengths follow Flickr30k's: about 12 words
on average, a spread of about 5, a few over 30, and one over 48 tokens (longer than `--max-target-tokens`'s default,
so the run cuts it and says so, as it does for Flickr30k's longest captions). The words are ordinary English;
they avoid " picture" and ":", the two tokens of the random decoder's end-of-text grammar (`rehearse/qwen3.py`).

Read next: `rehearse/commands.py` (how the rehearsal runs the commands and measures them).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

KARPATHY_FILE = "dataset_flickr30k.json"
IMAGE_DIR = "flickr30k_images"
CAPTIONS_PER_IMAGE = 5
SIZES = ((160, 120), (120, 160), (160, 107))  # Flickr's 500 x 375, 375 x 500 and 500 x 333, scaled down

SUBJECTS = ["a man", "a woman", "two children", "a young boy", "an older woman", "a group of people", "a girl",
            "three men", "a crowd", "a worker", "a little girl", "two women", "a musician", "a cyclist"]  # fmt: skip
MODIFIERS = ["in a blue shirt", "wearing a red hat", "with long hair", "in black pants", "holding a bag",
             "with a backpack", "in a yellow jacket", "wearing sunglasses"]  # fmt: skip
ACTIONS = ["is walking down the street", "is sitting on a bench", "are playing in the water", "is riding a bike",
           "stands near a wall", "is climbing a rock", "are dancing on a stage", "is cooking in a kitchen",
           "is reading a book", "are waiting at a bus stop", "plays a guitar", "is running on the beach"]  # fmt: skip
PLACES = ["in a park", "next to a busy road", "in front of a building", "on a sunny day", "near the ocean",
          "in the snow", "at night", "inside a small shop", "under a bridge", "by a river"]  # fmt: skip
EXTRAS = ["while another person watches", "and smiles at the camera", "as people walk by behind them",
          "while a dog waits nearby", "and the sky is cloudy", "with trees and houses in the background"]  # fmt: skip
CAPTION_LENGTHS = (12.3, 5.3)  # Flickr30k's words per caption: mean and standard deviation (about)
LONG_CAPTIONS = (33, 58)  # one caption of each length: a long one, and one beyond --max-target-tokens 48


@dataclass(frozen=True)
class FlickrLayout:
    """Where the folder is and what it holds."""

    root: Path
    images: list[Path]
    splits: dict[str, int]  # images per split
    captions: list[str]
    caption_splits: list[str]  # the split of each caption's image

    def mean_words(self) -> float:
        return sum(len(c.split()) for c in self.captions) / len(self.captions)


def caption_of_length(words: int, rng: random.Random) -> str:
    """An English caption of `words` words: who (with a detail when there is room), what they do, then where and
    what else, as long as it takes."""
    who = [rng.choice(SUBJECTS)] + ([rng.choice(MODIFIERS)] if words >= 8 else [])
    what = [rng.choice(ACTIONS)]
    while len(" ".join(who + what).split()) < words:
        what.append(rng.choice(PLACES if len(what) % 2 else EXTRAS))
    text = " ".join(" ".join(who + what).split()[:words])
    return text[0].upper() + text[1:] + "."


def caption_lengths(count: int, rng: random.Random) -> list[int]:
    """Word counts with Flickr30k's mean and spread (normal, at least 4), the two long ones first (so that they fall
    on the first image, a training one: the run then cuts the longest)."""
    mean, spread = CAPTION_LENGTHS
    return [*LONG_CAPTIONS, *(max(4, round(rng.gauss(mean, spread))) for _ in range(count - len(LONG_CAPTIONS)))]


def write_image(path: Path, size: tuple[int, int], rng: np.random.Generator) -> None:
    """A small JPEG: a smooth colour field with a few rectangles, different for every image."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / max(size)
    base = rng.uniform(0, 255, 3)
    slope = rng.uniform(-120, 120, (2, 3))
    pixels = base + x[..., None] * slope[0] + y[..., None] * slope[1]
    for _ in range(3):
        x0, y0 = rng.integers(0, width - 10), rng.integers(0, height - 10)
        pixels[y0 : y0 + rng.integers(10, 60), x0 : x0 + rng.integers(10, 60)] = rng.uniform(0, 255, 3)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)


def image_name(imgid: int) -> str:
    """A Flickr-like file name (Flickr30k's first image is 1000092795.jpg)."""
    return f"{1000092795 + 7919 * imgid}.jpg"


def write_flickr30k(root: Path, splits: dict[str, int], seed: int = 0) -> FlickrLayout:
    """The folder, with `splits[name]` images in each of Karpathy's splits (train, val, test)."""
    images_dir = root / IMAGE_DIR
    images_dir.mkdir(parents=True, exist_ok=True)
    rng, pixels_rng = random.Random(seed), np.random.default_rng(seed)
    total = sum(splits.values())
    lengths = iter(caption_lengths(total * CAPTIONS_PER_IMAGE, rng))
    labels = [name for name, n in splits.items() for _ in range(n)]
    entries, paths, captions = [], [], []
    for imgid, split in enumerate(labels):
        filename = image_name(imgid)
        write_image(images_dir / filename, SIZES[imgid % len(SIZES)], pixels_rng)
        raws = [caption_of_length(next(lengths), rng) for _ in range(CAPTIONS_PER_IMAGE)]
        sentids = list(range(imgid * CAPTIONS_PER_IMAGE, (imgid + 1) * CAPTIONS_PER_IMAGE))
        sentences = [
            {"tokens": raw.rstrip(".").lower().split(), "raw": raw, "imgid": imgid, "sentid": sentid}
            for raw, sentid in zip(raws, sentids, strict=True)
        ]
        entries.append({"filename": filename, "imgid": imgid, "split": split, "sentences": sentences,
                        "sentids": sentids})  # fmt: skip
        paths.append(images_dir / filename)
        captions += raws
    (root / KARPATHY_FILE).write_text(json.dumps({"images": entries, "dataset": "flickr30k"}))
    caption_splits = [split for split in labels for _ in range(CAPTIONS_PER_IMAGE)]
    return FlickrLayout(root, paths, dict(splits), captions, caption_splits)
