"""`load_dataset`: one call from a data source name to checked train / val / test splits.

    splits, report = load_dataset("shapes", cache_dir=Path(".data"))            # generated, offline
    splits, report = load_dataset("flickr30k", cache_dir=Path(".data"))         # nlphuji/flickr30k on the hub
    splits, report = load_dataset("hf:OWNER/REPO", cache_dir=Path(".data"))     # another repo in that layout
    splits, report = load_dataset("/path/to/flickr30k", cache_dir=Path(".data"), split="karpathy")
    splits, report = load_dataset("synthetic:/path/to/out", cache_dir=Path(".data"))  # written by `python -m synth`
    splits, report = load_dataset("flickr30k,synthetic:/path/to/out", cache_dir=Path(".data"))  # merged
    print(report.summary())

The steps are the same for every source: read the annotations into `ImageRecord`s (`flickr30k.py`,
`synthetic.py`), decode every image once and drop the broken ones (`images.py`), then split by image
(`splits.py`).

A comma-separated list of sources is merged image by image before splitting: the records of one image (the same
file name in every source) become one record holding all their captions and questions. So the teacher's questions
about a Flickr30k image join that image's human captions, and the image, with everything said about it, lands in
one split. Two images are the same when their file names are equal (Flickr30k's names are its image ids, the same
in every layout, while the folder differs from machine to machine); the merged record keeps the first listed
source's path that exists on this machine, and the first split label it meets (so `split="karpathy"` works for
`flickr30k,synthetic:...` when every synthetic image is a Flickr30k image).

Read next: `data/flickr30k.py` or `data/shapes.py` (the two built-in sources), `data/splits.py`.
"""

from __future__ import annotations

import re
from pathlib import Path

from errors import UserError
from runtime.files import file_lock

from .flickr30k import DEFAULT_HUB_REPO, read_hub, read_local
from .images import check_max_bad_fraction, drop_bad_images
from .records import MAX_EXAMPLES, ImageRecord, LoadReport
from .shapes import generate_shapes, is_complete
from .splits import SCHEMES, Splits, split_records
from .synthetic import read_synthetic

_HUB_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")
VERIFIED_IMAGES = "verified-images.json"  # in the cache folder (data/images.py)
SOURCES = "'shapes', 'flickr30k', 'hf:OWNER/REPO', 'synthetic:PATH' or a local folder (or a comma-separated list)"


def load_dataset(
    source: str,
    *,
    cache_dir: Path,
    split: str = "random",
    seed: int = 0,
    max_bad_fraction: float = 0.01,
    shapes_images: int = 2000,
) -> tuple[Splits, LoadReport]:
    """Load `source` and split it by image.

    `source` is "shapes", "flickr30k", "hf:OWNER/REPO", "synthetic:PATH" (a folder written by `python -m synth`),
    a local path, or a comma-separated list of these, merged by image (see the module docstring).
    `split` is the scheme, "random" (80/10/10 from `seed`) or "karpathy" (the layout's own labels).
    The shapes set is generated into `cache_dir/shapes-seed{seed}-n{shapes_images}` unless already there, by one
    process at a time (a file lock; the others wait for it, then read).
    Raises `UserError` for an unknown source, a missing path, an unreadable layout, an unreachable hub, or
    more than `max_bad_fraction` broken images.
    """
    # Fail before any download or generation.
    if split not in SCHEMES:
        raise UserError(f"unknown split scheme {split!r}; accepted: {', '.join(SCHEMES)}")
    check_max_bad_fraction(max_bad_fraction)
    names = check_source(source)
    cache_dir = Path(cache_dir).expanduser()
    loaded = [_read_source(name, cache_dir, seed, shapes_images) for name in names]
    records, report = loaded[0] if len(loaded) == 1 else merge_sources(loaded)
    # The images that decoded cleanly before: those unchanged since are not decoded again.
    verified = cache_dir / VERIFIED_IMAGES
    records = drop_bad_images(records, report, max_bad_fraction=max_bad_fraction, verified=verified)
    return split_records(records, split, seed), report


def check_source(source: str) -> list[str]:
    """The names in `source` (a comma-separated list), after checking their form without reading any data.

    Checked: no empty entry; a hub dataset is written hf:OWNER/REPO; a local folder or file exists, and so does a
    synthetic:PATH folder. Not checked here: whether the hub can be reached and whether a folder holds a layout we
    can read (that needs reading it). `load_dataset` calls this first; train.py calls it before any slow work.
    """
    names = [name.strip() for name in source.split(",")]
    if not all(names):
        raise UserError(f"data source {source!r} has an empty entry; write a list as SOURCE,SOURCE (e.g. {SOURCES})")
    for name in names:
        if name in ("shapes", "flickr30k"):
            continue
        if name.startswith("hf:"):
            if not _HUB_REPO_ID.fullmatch(name.removeprefix("hf:")):
                raise UserError(f"{name!r} is not a hub dataset; write it as hf:OWNER/REPO")
        elif name.startswith("synthetic:"):
            folder = Path(name.removeprefix("synthetic:")).expanduser()
            if not folder.is_dir():
                raise UserError(
                    f"synthetic data folder {folder} does not exist; write one with `python -m synth --out {folder}`"
                )
        elif not Path(name).expanduser().exists():
            raise UserError(f"data source {name!r} is not {SOURCES}: no such file or folder")
    return names


def _read_source(source: str, cache_dir: Path, seed: int, shapes_images: int) -> tuple[list[ImageRecord], LoadReport]:
    """The records of one source name (images not decoded yet; its form was checked by `check_source`)."""
    if source == "shapes":
        folder = cache_dir / f"shapes-seed{seed}-n{shapes_images}"
        if not is_complete(folder, shapes_images):
            with file_lock(folder, f"the shapes set of {shapes_images:,} images (seed {seed})"):  # one builder
                if not is_complete(folder, shapes_images):  # else made by the process that held the lock before us
                    generate_shapes(folder, n_images=shapes_images, seed=seed)
        return read_local(folder)
    if source == "flickr30k" or source.startswith("hf:"):
        repo_id = DEFAULT_HUB_REPO if source == "flickr30k" else source.removeprefix("hf:")
        return read_hub(repo_id, cache_dir)
    if source.startswith("synthetic:"):
        return read_synthetic(Path(source.removeprefix("synthetic:")))
    return read_local(Path(source).expanduser())


def merge_sources(loaded: list[tuple[list[ImageRecord], LoadReport]]) -> tuple[list[ImageRecord], LoadReport]:
    """Merge several sources' records by image file name into new records, and their reports into one."""
    merged: dict[str, ImageRecord] = {}
    for records, _ in loaded:
        paths: dict[str, Path] = {}  # file name -> path, within this source
        for record in records:
            name = record.path.name
            if paths.setdefault(name, record.path) != record.path:
                raise UserError(
                    f"cannot merge sources by image: {paths[name]} and {record.path} share the file name {name!r}; "
                    "merge only sources whose image file names are unique"
                )
            if name not in merged:
                merged[name] = ImageRecord(
                    record.image_id, record.path, list(record.captions), list(record.qa), record.split
                )
                continue
            image = merged[name]
            image.captions.extend(record.captions)
            image.qa.extend(record.qa)
            image.split = image.split or record.split
            if not image.path.is_file() and record.path.is_file():  # e.g. a synthetic set made on another machine
                image.path, image.image_id = record.path, record.image_id
    reports = [report for _, report in loaded]
    report = LoadReport(
        source=",".join(r.source for r in reports),
        layout=" + ".join(r.layout for r in reports),
        images_found=len(merged) + sum(r.images_skipped for r in reports),
    )
    for r in reports:  # what each source skipped or repaired while reading
        report.images_skipped += r.images_skipped
        report.skip_reasons.update(r.skip_reasons)
        report.empty_captions_dropped += r.empty_captions_dropped
        report.malformed_rows_skipped += r.malformed_rows_skipped
        report.rows_repaired += r.rows_repaired
        report.skipped_examples = (report.skipped_examples + r.skipped_examples)[:MAX_EXAMPLES]
        report.malformed_examples = (report.malformed_examples + r.malformed_examples)[:MAX_EXAMPLES]
        report.repaired_examples = (report.repaired_examples + r.repaired_examples)[:MAX_EXAMPLES]
    return list(merged.values()), report
