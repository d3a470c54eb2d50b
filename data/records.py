"""What a loaded dataset is made of: one `ImageRecord` per image, and a `LoadReport` of what was skipped.

Every layout (Karpathy json, the hub's annotation CSV, Kaggle's `results.csv`, the generated shapes) is
turned into the same list of `ImageRecord`s, so the rest of the code never needs to know where the data came
from. An image is the unit of everything downstream: captions and question-answer pairs hang off it, and
splits are made by image (never by caption) so no test image is ever seen in training.

Real datasets are a little broken: files go missing, downloads get cut short, a CSV row loses a separator.
The loaders do not crash on those; they skip (or repair) the item and count it in a `LoadReport`, whose
`summary()` tells the user in one paragraph what was dropped, with example paths to go and look at.

Read next: `data/loading.py` (where records come from), `data/batches.py` (what training makes of them).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# How many example paths / rows a report keeps for each kind of problem.
MAX_EXAMPLES = 3


@dataclass
class ImageRecord:
    """One image and everything said about it.

    `image_id` is the file name without extension (the same id in every Flickr30k layout);
    `split` is the layout's own split label ("train" / "val" / "test"), or None when it has none.
    """

    image_id: str
    path: Path
    captions: list[str]
    qa: list[tuple[str, str]] = field(default_factory=list)
    split: str | None = None


@dataclass(frozen=True)
class Columns:
    """The user's names for a table's image and caption columns (`--image-column`, `--caption-column`), for a Parquet
    repo or an imagefolder's metadata file; None: look for the usual names."""

    image: str | None = None
    caption: str | None = None


@dataclass
class LoadReport:
    """Counts of what a load found, skipped, dropped and repaired, with a few examples of each."""

    source: str = ""
    layout: str = ""
    # "flickr30k" or "coco" when the data is one of those sets (whatever its layout), else "": with Karpathy's
    # split, `--test` then prints the published results on the same test images beside ours (evaluation/published.py).
    dataset: str = ""
    images_found: int = 0
    images_skipped: int = 0
    skip_reasons: Counter[str] = field(default_factory=Counter)
    skipped_examples: list[str] = field(default_factory=list)
    empty_captions_dropped: int = 0
    malformed_rows_skipped: int = 0
    malformed_examples: list[str] = field(default_factory=list)
    rows_repaired: int = 0
    repaired_examples: list[str] = field(default_factory=list)

    @staticmethod
    def _count(n: int, noun: str) -> str:
        return f"{n:,} {noun}{'' if n == 1 else 's'}"

    @property
    def images_kept(self) -> int:
        return self.images_found - self.images_skipped

    def skip_image(self, path: Path | str, reason: str) -> None:
        """Count one image dropped for `reason` ("missing", "unreadable", "truncated", ...)."""
        self.images_skipped += 1
        self.skip_reasons[reason] += 1
        if len(self.skipped_examples) < MAX_EXAMPLES:
            self.skipped_examples.append(f"{path} ({reason})")

    def skip_row(self, where: str) -> None:
        """Count one annotation row that could not be understood and was left out."""
        self.malformed_rows_skipped += 1
        if len(self.malformed_examples) < MAX_EXAMPLES:
            self.malformed_examples.append(where)

    def repair_row(self, where: str) -> None:
        """Count one annotation row that was malformed but could be read after a repair."""
        self.rows_repaired += 1
        if len(self.repaired_examples) < MAX_EXAMPLES:
            self.repaired_examples.append(where)

    def summary(self) -> str:
        """One paragraph for the user: what was loaded and everything that was left out or fixed."""
        where = f" ({self.layout} at {self.source})" if self.layout else f" from {self.source}" if self.source else ""
        parts = [f"Loaded {self.images_kept:,} of {self.images_found:,} images{where}."]
        if self.images_skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skip_reasons.items()))
            examples = "; ".join(self.skipped_examples)
            parts.append(f"Skipped {self._count(self.images_skipped, 'image')} ({reasons}), e.g. {examples}.")
        if self.empty_captions_dropped:
            parts.append(f"Dropped {self._count(self.empty_captions_dropped, 'empty caption')}.")
        if self.rows_repaired:
            examples = "; ".join(self.repaired_examples)
            parts.append(f"Repaired {self._count(self.rows_repaired, 'malformed row')}, e.g. {examples}.")
        if self.malformed_rows_skipped:
            examples = "; ".join(self.malformed_examples)
            parts.append(f"Skipped {self._count(self.malformed_rows_skipped, 'malformed row')}, e.g. {examples}.")
        if len(parts) == 1:
            parts.append("Nothing was skipped.")
        return " ".join(parts)
