"""Look before you train: what the loader will read from a data source, in numbers and in one picture.

    python -m data.inspect --data ~/data/coco                       # a folder in any layout train.py reads
    python -m data.inspect --data hf:OWNER/NAME:SUBSET              # a dataset repo on the hub
    python -m data.inspect --data shapes --sheet shapes.png         # the demo's generated set

It loads the source exactly as `train.py --data SOURCE` does (`data.load_dataset`, the same split scheme and column
flags) and prints:

- the detected layout, and the load report (what was skipped, dropped or repaired, and why);
- images, captions and questions per split, with captions per image (min / median / max);
- caption length in tokens of the Qwen3 tokenizer (percentiles), and how many captions `--max-target-tokens` would
  cut (they are learned without an end-of-text token: `data/batches.py`);
- bad images (missing, unreadable, truncated): counted, never fatal here, whatever `--max-bad-fraction` says;
- images that appear in more than one split: the same file, or a copy with the same bytes under another name (a
  held-out image seen in training makes the test score a memory test);

and writes a contact sheet, a PNG of a few images with their split, a caption and a question, so a wrong folder, a
caption joined to the wrong image or a broken text column shows at a glance, before a GPU hour is spent on it. Nothing
is written into the data folder: the sheet goes to `--sheet` (default: the cache folder's `inspect/`).

Finding copies: comparing every pair of files would read the whole data set. Only files of equal size can be equal,
so files are grouped by size, then by a hash of their last 4 KiB (the end of a JPEG's compressed data, which differs
between any two photos; the start can be a long shared EXIF header), and only those still together are hashed whole.

Read next: `data/loading.py` (what is loaded), `docs/data.md` (a new user's path: inspect, train, caption).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from tokenizers import Tokenizer

from errors import OneLineArgumentParser, UserError
from hub import download_repo
from runtime.env import DEFAULT_CACHE_DIR

from .images import load_image
from .loading import load_dataset
from .records import ImageRecord, LoadReport
from .splits import SCHEMES, Splits

DEFAULT_TOKENIZER = "Qwen/Qwen3-0.6B-Base"
SPLIT_NAMES = ("train", "val", "test")
PERCENTILES = (50, 90, 99)
TAIL_BYTES = 4096  # the part of a file hashed to tell files of equal size apart (see the module docstring)
TILE = 256  # pixels: a contact sheet tile's image


@dataclass
class SplitStats:
    """One split in numbers."""

    name: str
    images: int
    captions: int
    questions: int
    captions_per_image: tuple[int, float, int]  # min, median, max (0, 0, 0 when the split is empty)


@dataclass
class Inspection:
    """Everything `python -m data.inspect` prints."""

    report: LoadReport
    scheme: str  # the split scheme used: "random" or "karpathy"
    splits: list[SplitStats]
    tokenizer: str  # what measured the lengths: a tokenizer's source, or why words were counted instead
    unit: str  # "tokens" or "words"
    length_percentiles: dict[int, int]  # percentile -> caption length
    longest: int
    cut: int  # captions longer than max_target_tokens
    max_target_tokens: int
    shared: list[tuple[str, str, str, str]] = field(default_factory=list)  # (split, path, split, path) of copies


def split_stats(name: str, records: list[ImageRecord]) -> SplitStats:
    per_image = [len(r.captions) for r in records] or [0]
    return SplitStats(
        name=name,
        images=len(records),
        captions=sum(len(r.captions) for r in records),
        questions=sum(len(r.qa) for r in records),
        captions_per_image=(min(per_image), float(np.median(per_image)), max(per_image)),
    )


def load_text_tokenizer(source: str) -> Tokenizer:
    """A `tokenizers.Tokenizer` from a tokenizer.json file, a folder holding one, or a hub model repo (downloaded
    once into the hub cache; the cache alone when offline). Only the lengths matter here, not the special ids."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        if path.exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", source):  # a path, not a hub id OWNER/NAME
            raise UserError(f"no tokenizer.json at {source}; pass --tokenizer DIR, a folder that holds one")
        path = download_repo(source, ["tokenizer.json"], what=source, instead="--tokenizer DIR") / "tokenizer.json"
    return Tokenizer.from_file(str(path))


def caption_lengths(captions: list[str], tokenizer_source: str) -> tuple[np.ndarray, str, str]:
    """Each caption's length as the model sees it (its target " caption", tokenised without special tokens), the
    tokenizer's description, and the unit. Without a tokenizer (offline, no local copy), words, and why."""
    try:
        tokenizer = load_text_tokenizer(tokenizer_source)
    except UserError as err:
        words = np.array([len(c.split()) for c in captions], dtype=np.int64)
        return words, f"not tokens: {err}", "words"
    encoded = tokenizer.encode_batch([" " + c for c in captions], add_special_tokens=False)
    return np.array([len(e.ids) for e in encoded], dtype=np.int64), tokenizer_source, "tokens"


def _digest(path: Path, tail: bool) -> str:
    """SHA-256 of the file's last TAIL_BYTES (tail=True) or of the whole file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        if tail:
            f.seek(max(0, path.stat().st_size - TAIL_BYTES))
            digest.update(f.read(TAIL_BYTES))
        else:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def shared_between_splits(splits: Splits) -> list[tuple[str, str, str, str]]:
    """Files that appear in more than one split, as (split, path, other split, other path): the same path, or the
    same bytes under another name (see the module docstring for how they are found cheaply)."""
    group: dict[object, list[tuple[str, Path]]] = defaultdict(list)
    for name in SPLIT_NAMES:
        for record in getattr(splits, name):
            try:
                group[os.stat(record.path).st_size].append((name, record.path))
            except OSError:
                continue  # a missing image is the load report's business
    for tail in (True, False):  # narrow the groups: by size, then by the last 4 KiB, then by the whole file
        narrower: dict[object, list[tuple[str, Path]]] = defaultdict(list)
        for members in group.values():
            if len({split for split, _ in members}) < 2:
                continue  # all in one split: copies within a split do no harm to the scores
            for split, path in members:
                narrower[_digest(path, tail=tail)].append((split, path))
        group = narrower
    found = []
    for members in group.values():
        first_split, first_path = members[0]
        found += [(first_split, str(first_path), s, str(p)) for s, p in members[1:] if s != first_split]
    return sorted(found)


def inspect_source(
    source: str,
    *,
    cache_dir: Path,
    split: str = "auto",
    seed: int = 0,
    image_column: str | None = None,
    caption_column: str | None = None,
    tokenizer: str = DEFAULT_TOKENIZER,
    max_target_tokens: int = 48,
) -> tuple[Inspection, Splits]:
    """Load `source` as train.py would (bad images counted, never fatal) and measure it."""
    splits, report = load_dataset(
        source, cache_dir=cache_dir, split=split, seed=seed, max_bad_fraction=1.0,
        image_column=image_column, caption_column=caption_column,
    )  # fmt: skip
    records = splits.train + splits.val + splits.test
    captions = [c for r in records for c in r.captions]
    lengths, tokenizer_used, unit = caption_lengths(captions, tokenizer)
    if not len(lengths):
        lengths = np.zeros(1, dtype=np.int64)
    inspection = Inspection(
        report=report,
        scheme=splits.scheme,
        splits=[split_stats(name, getattr(splits, name)) for name in SPLIT_NAMES],
        tokenizer=tokenizer_used,
        unit=unit,
        length_percentiles={p: int(np.percentile(lengths, p)) for p in PERCENTILES},
        longest=int(lengths.max()),
        cut=int((lengths > max_target_tokens).sum()) if unit == "tokens" else 0,
        max_target_tokens=max_target_tokens,
        shared=shared_between_splits(splits),
    )
    return inspection, splits


def describe(inspection: Inspection) -> str:
    """The inspection as the terminal shows it."""
    lines = [inspection.report.summary()]
    how = "the data's own labels" if inspection.scheme == "karpathy" else "80/10/10 by image from the seed"
    lines.append(f"split: {inspection.scheme} ({how})")
    lines.append(f"{'split':<7}{'images':>10}{'captions':>11}{'questions':>11}   captions per image (min/median/max)")
    for s in inspection.splits:
        low, median, high = s.captions_per_image
        lines.append(f"{s.name:<7}{s.images:>10,}{s.captions:>11,}{s.questions:>11,}   {low} / {median:g} / {high}")
    percentiles = "  ".join(f"p{p} {v}" for p, v in inspection.length_percentiles.items())
    lines.append(
        f"caption length in {inspection.unit} ({inspection.tokenizer}): {percentiles}  max {inspection.longest}"
    )
    if inspection.unit == "tokens":
        total = sum(s.captions for s in inspection.splits) or 1
        lines.append(
            f"longer than --max-target-tokens {inspection.max_target_tokens}: {inspection.cut:,} captions "
            f"({inspection.cut / total:.1%}); train.py cuts them there, without an end-of-text token"
        )
    bad = inspection.report.images_skipped
    lines.append(f"bad images: {bad:,}" + (" (see the load report above)" if bad else ""))
    if inspection.shared:
        a, path_a, b, path_b = inspection.shared[0]
        lines.append(
            f"images in more than one split: {len(inspection.shared):,}, e.g. {path_a} ({a}) = {path_b} ({b}); "
            "they make the held-out scores a memory test"
        )
    else:
        lines.append("images in more than one split: none")
    return "\n".join(lines)


def contact_sheet(splits: Splits, path: Path, n: int = 12, seed: int = 0, columns: int = 4) -> Path:
    """A PNG of `n` images drawn from every split, each with its split, file name, first caption and a question;
    written atomically to `path`."""
    from runtime.files import write_atomically

    pool = [(name, r) for name in SPLIT_NAMES for r in getattr(splits, name)]
    if not pool:
        raise UserError("no images to draw a contact sheet of: every image was skipped (see the load report)")
    rng = np.random.default_rng(seed)
    chosen = [pool[i] for i in sorted(rng.choice(len(pool), size=min(n, len(pool)), replace=False))]
    font = ImageFont.load_default(size=13)
    text_height = 8 * 16
    rows = -(-len(chosen) // columns)  # ceiling division
    sheet = Image.new("RGB", (columns * TILE, rows * (TILE + text_height)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (split, record) in enumerate(chosen):
        x, y = (k % columns) * TILE, (k // columns) * (TILE + text_height)
        image = load_image(record.path)
        if image is not None:  # scaled to fit the tile, up or down
            scale = (TILE - 8) / max(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
            sheet.paste(image, (x + (TILE - image.width) // 2, y + (TILE - image.height) // 2))
        else:
            draw.text((x + 8, y + TILE // 2), "unreadable image", fill="red", font=font)
        text = [f"[{split}] {record.path.name}"]
        text += textwrap.wrap(record.captions[0], 34)[:4] if record.captions else ["(no caption)"]
        if record.qa:
            question, answer = record.qa[int(rng.integers(len(record.qa)))]
            text += textwrap.wrap(f"Q: {question} A: {answer}", 34)[:3]
        draw.multiline_text((x + 6, y + TILE + 2), "\n".join(text[:8]), fill="black", font=font, spacing=2)
    path = Path(path).expanduser().resolve()
    write_atomically(path, lambda tmp: sheet.save(tmp, format="PNG"))
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m data.inspect", description="Show what train.py will read from a data source, before training."
    )
    parser.add_argument("--data", required=True, help="a data source, as train.py's --data takes it")
    parser.add_argument(
        "--split", default="auto", choices=SCHEMES, help="the split scheme, as train.py's (default: auto)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the seed of the random split (default: 0)")
    parser.add_argument("--image-column", help="a Parquet repo's image column (default: found by itself)")
    parser.add_argument("--caption-column", help="the caption column of a Parquet repo or an imagefolder's metadata "
                        "(default: text, caption, captions, ...)")  # fmt: skip
    parser.add_argument("--tokenizer", default=DEFAULT_TOKENIZER,
                        help=f"the tokenizer that measures caption lengths: a hub id or a folder with tokenizer.json "
                        f"(default: {DEFAULT_TOKENIZER})")  # fmt: skip
    parser.add_argument("--max-target-tokens", type=int, default=48,
                        help="count the captions longer than this (train.py's default: 48)")  # fmt: skip
    parser.add_argument("--cache-dir", type=Path, default=Path(DEFAULT_CACHE_DIR),
                        help=f"where downloads, extracted images and the sheet go (default: {DEFAULT_CACHE_DIR})")  # fmt: skip
    parser.add_argument("--sheet", type=Path,
                        help="the contact sheet's path (default: CACHE_DIR/inspect/NAME.png)")  # fmt: skip
    parser.add_argument("--samples", type=int, default=12, help="images on the contact sheet (default: 12)")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Refuse, in one line, values no inspection can use (before any data is read)."""
    for flag, value in (("--samples", args.samples), ("--max-target-tokens", args.max_target_tokens)):
        if value < 1:
            raise UserError(f"{flag} {value} is invalid; expected an integer >= 1")
    if args.seed < 0:
        raise UserError(f"--seed {args.seed} is invalid; expected an integer >= 0")
    if args.cache_dir.expanduser().is_file():
        raise UserError(f"--cache-dir {args.cache_dir} is a file; expected a folder (it is made if missing)")
    if args.sheet is not None and args.sheet.expanduser().is_dir():
        raise UserError(f"--sheet {args.sheet} is a folder; expected the path of a PNG file to write")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=False, highlight=False, soft_wrap=True)
    try:
        check_args(args)
        inspection, splits = inspect_source(
            args.data, cache_dir=args.cache_dir.expanduser(), split=args.split, seed=args.seed,
            image_column=args.image_column, caption_column=args.caption_column, tokenizer=args.tokenizer,
            max_target_tokens=args.max_target_tokens,
        )  # fmt: skip
        console.print(describe(inspection), markup=False)
        slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in args.data).strip("-.")[-80:] or "data"
        sheet = contact_sheet(splits, args.sheet or args.cache_dir.expanduser() / "inspect" / f"{slug}.png",
                              n=args.samples, seed=args.seed)  # fmt: skip
        console.print(f"contact sheet: {sheet}", markup=False)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
