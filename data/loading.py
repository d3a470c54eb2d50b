"""`load_dataset`: one call from a data source name to checked train / val / test splits.

    splits, report = load_dataset("shapes", cache_dir=Path(".data"))            # generated, offline
    splits, report = load_dataset("flickr30k", cache_dir=Path(".data"))         # nlphuji/flickr30k on the hub
    splits, report = load_dataset("hf:OWNER/REPO", cache_dir=Path(".data"))     # Parquet (push_to_hub) or that layout
    splits, report = load_dataset("/path/to/flickr30k", cache_dir=Path(".data"), split="karpathy")
    splits, report = load_dataset("/path/to/coco", cache_dir=Path(".data"), split="karpathy")  # any COCO layout
    splits, report = load_dataset("/path/to/photos", cache_dir=Path(".data"))  # an imagefolder: metadata.jsonl
    splits, report = load_dataset("synthetic:/path/to/out", cache_dir=Path(".data"))  # written by `python -m synth`
    splits, report = load_dataset("flickr30k,synthetic:/path/to/out", cache_dir=Path(".data"))  # merged
    print(report.summary())

The steps are the same for every source: read the annotations into `ImageRecord`s (`flickr30k.py`, `coco.py`,
`imagefolder.py`, `synthetic.py`), decode every image once and drop the broken ones (`images.py`), then split by image
(`splits.py`). A local folder's layout is detected from what it holds (`read_local`): COCO's Karpathy or official
caption files, Flickr30k's three layouts (and any Karpathy split file), or an imagefolder with metadata files.

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
from runtime.env import check_folder
from runtime.files import file_lock

from .coco import LAYOUTS as COCO_LAYOUTS
from .coco import find_coco, read_coco
from .flickr30k import DEFAULT_HUB_REPO, describe_contents, find_layout, read_hub, read_layout
from .flickr30k import LAYOUTS as FLICKR30K_LAYOUTS
from .imagefolder import LAYOUTS as IMAGEFOLDER_LAYOUTS
from .imagefolder import is_imagefolder, read_imagefolder
from .images import check_max_bad_fraction, drop_bad_images
from .parquet import looks_like_parquet_repo, read_hub_dataset, read_parquet_folder, split_hub_source
from .records import MAX_EXAMPLES, Columns, ImageRecord, LoadReport
from .shapes import generate_shapes, is_complete
from .splits import SCHEMES, Splits, check_labels, split_records
from .synthetic import read_synthetic

_HUB_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")
VERIFIED_IMAGES = "verified-images.json"  # in the cache folder (data/images.py)
SOURCES = "'shapes', 'flickr30k', 'hf:OWNER/REPO', 'synthetic:PATH' or a local folder (or a comma-separated list)"
LOCAL_LAYOUTS = (
    f"{COCO_LAYOUTS}; Flickr30k: {FLICKR30K_LAYOUTS}; a Parquet dataset repo (*.parquet files, as "
    f"`hf download OWNER/NAME --repo-type dataset --local-dir DIR` leaves them); {IMAGEFOLDER_LAYOUTS}"
)


def load_dataset(
    source: str,
    *,
    cache_dir: Path,
    split: str = "random",
    seed: int = 0,
    max_bad_fraction: float = 0.01,
    shapes_images: int = 2000,
    image_column: str | None = None,
    caption_column: str | None = None,
) -> tuple[Splits, LoadReport]:
    """Load `source` and split it by image.

    `source` is "shapes", "flickr30k", "hf:OWNER/REPO", "synthetic:PATH" (a folder written by `python -m synth`),
    a local path, or a comma-separated list of these, merged by image (see the module docstring).
    `split` is the scheme, "random" (80/10/10 from `seed`) or "karpathy" (the layout's own labels).
    The shapes set is generated into `cache_dir/shapes-seed{seed}-n{shapes_images}` unless already there, by one
    process at a time (a file lock; the others wait for it, then read).
    `image_column` / `caption_column` name the columns of a Parquet repo or an imagefolder's metadata file when they
    are not among the usual names (None: detect them).
    Raises `UserError` for an unknown source, a missing path, an unreadable layout, an unreachable hub, or
    more than `max_bad_fraction` broken images.
    """
    # Fail before any download or generation.
    if split not in SCHEMES:
        raise UserError(f"unknown split scheme {split!r}; accepted: {', '.join(SCHEMES)}")
    check_max_bad_fraction(max_bad_fraction)
    names = check_source(source)
    cache_dir = check_folder(cache_dir, "the cache folder (--cache-dir)")
    columns = Columns(image_column, caption_column)
    loaded = [_read_source(name, cache_dir, seed, shapes_images, columns) for name in names]
    records, report = loaded[0] if len(loaded) == 1 else merge_sources(loaded)
    if split == "karpathy":
        check_labels(records)  # one line now, not after decoding every image
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
            repo_id, subset = split_hub_source(name)  # hf:OWNER/REPO:SUBSET names a subset of a Parquet repo
            if not _HUB_REPO_ID.fullmatch(repo_id) or subset == "":
                raise UserError(f"{name!r} is not a hub dataset; write it as hf:OWNER/REPO or hf:OWNER/REPO:SUBSET")
        elif name.startswith("synthetic:"):
            folder = Path(name.removeprefix("synthetic:")).expanduser()
            if not folder.is_dir():
                raise UserError(
                    f"synthetic data folder {folder} does not exist; write one with `python -m synth --out {folder}`"
                )
        elif not Path(name).expanduser().exists():
            raise UserError(f"data source {name!r} is not {SOURCES}: no such file or folder")
    return names


def _read_source(
    source: str, cache_dir: Path, seed: int, shapes_images: int, columns: Columns
) -> tuple[list[ImageRecord], LoadReport]:
    """The records of one source name (images not decoded yet; its form was checked by `check_source`)."""
    if source == "shapes":
        folder = cache_dir / f"shapes-seed{seed}-n{shapes_images}"
        if not is_complete(folder, shapes_images):
            with file_lock(folder, f"the shapes set of {shapes_images:,} images (seed {seed})"):  # one builder
                if not is_complete(folder, shapes_images):  # else made by the process that held the lock before us
                    generate_shapes(folder, n_images=shapes_images, seed=seed)
        return read_local(folder)
    if source == "flickr30k":
        return read_hub(DEFAULT_HUB_REPO, cache_dir)
    if source.startswith("hf:"):  # a Parquet repo or one laid out like nlphuji/flickr30k, told apart by its files
        repo_id, subset = split_hub_source(source)
        return read_hub_dataset(repo_id, subset, cache_dir, columns)
    if source.startswith("synthetic:"):
        return read_synthetic(Path(source.removeprefix("synthetic:")))
    return read_local(Path(source).expanduser(), columns, cache_dir)


def read_local(
    path: Path, columns: Columns | None = None, cache_dir: Path | None = None
) -> tuple[list[ImageRecord], LoadReport]:
    """A local folder (or annotation file) in whichever layout it holds; images are located, not decoded.

    The layouts are tried in this order, each detected from the files it needs: COCO (`coco.py`: Karpathy's
    dataset_coco.json, else COCO's own captions_*.json), Flickr30k's three and any other Karpathy split file
    (`flickr30k.py`), then an imagefolder (`imagefolder.py`: a metadata file somewhere under the folder), then a
    Parquet dataset repo downloaded with `hf download --local-dir` (`parquet.py`: its images are written once under
    `cache_dir`). COCO comes first because its Karpathy file is a dataset_*.json too, which Flickr30k's reader would
    also take; the imagefolder before Parquet because its metadata may be a metadata.parquet. `columns` names an
    imagefolder's or a Parquet folder's columns.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"data path {path} does not exist; pass a folder in one of these layouts: {LOCAL_LAYOUTS}")
    if (coco := find_coco(path)) is not None:
        return read_coco(path, coco)
    if (flickr30k := find_layout(path)) is not None:
        return read_layout(path, *flickr30k)
    if is_imagefolder(path):  # before Parquet: an imagefolder's metadata may be a metadata.parquet
        return read_imagefolder(path, columns)
    if cache_dir is not None and looks_like_parquet_repo(path):
        return read_parquet_folder(path, None, cache_dir, columns or Columns())
    raise UserError(f"no known data layout in {path}: looked for {LOCAL_LAYOUTS}; found {describe_contents(path)}")


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
        dataset=reports[0].dataset if len({r.dataset for r in reports}) == 1 else "",
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
