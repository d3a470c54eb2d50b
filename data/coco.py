"""COCO captions: 123,287 photos with five human captions each (a few have six or seven), in the layouts people have.

COCO (Lin et al. 2014, https://arxiv.org/abs/1405.0312) was captioned by Chen et al. 2015
(https://arxiv.org/abs/1504.00325): 616,767 captions of the 82,783 `train2014` and 40,504 `val2014` images. The
images and the official annotations come from COCO's download page, https://cocodataset.org/#download
(`http://images.cocodataset.org/zips/train2014.zip`, `val2014.zip`, `train2017.zip`, `val2017.zip`, and
`http://images.cocodataset.org/annotations/annotations_trainval2014.zip` / `annotations_trainval2017.zip`, which
unpack into `annotations/`). Three layouts are detected from a local folder (or from the annotation file itself):

1. Karpathy's split file `dataset_coco.json` beside `train2014/` and `val2014/` (layout "coco-karpathy-json").
   It is in Karpathy's `caption_datasets.zip` (https://cs.stanford.edu/people/karpathy/deepimagesent/, with
   `dataset_flickr30k.json` and `dataset_flickr8k.json`), the split of Karpathy & Fei-Fei 2015
   (https://arxiv.org/abs/1412.2306) that published COCO captioning results use. The same format as Flickr30k's
   (read by `flickr30k.read_karpathy_json`), with two more fields per image:

       {"images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg", "cocoid": 391895,
                    "imgid": 0, "split": "test", "sentids": [770337, ...],
                    "sentences": [{"tokens": ["a", "man", "with", ...], "imgid": 0, "sentid": 770337,
                                   "raw": "A man with a red helmet on a small moped on a dirt road. "}, ...]}, ...],
        "dataset": "coco"}

   Splits: train 82,783 + restval 30,504 (restval joins train: 113,287), val 5,000, test 5,000 (`splits.py`).
   Raw captions end in spaces, which are stripped. The file is about 150 MB, mostly the sentences' `tokens` lists,
   which are dropped while parsing (we tokenize `raw` ourselves): reading it takes a few seconds and well under a GB.
2. The same Karpathy file over COCO 2017's folders `train2017/` and `val2017/` (layout "coco-karpathy-json (2017
   folders)"). COCO 2017 holds the same 123,287 images re-split (118,287 / 5,000) and renamed by their COCO id:
   `COCO_val2014_000000391895.jpg` is `000000391895.jpg`. Karpathy's test images (taken from val2014) are in both
   2017 folders, so each image is looked up by its `cocoid` in a name -> folder index of the two folders, built by
   listing them once.
3. The official annotation files `annotations/captions_train2014.json` and `captions_val2014.json` (or the 2017
   ones) beside the image folders they describe (layout "coco-captions-json"). COCO's own format, captions joined to
   images by id:

       {"info": {...}, "licenses": [...],
        "images": [{"id": 391895, "file_name": "COCO_val2014_000000391895.jpg", "height": 360, "width": 640,
                    "license": 3, "coco_url": "...", "flickr_url": "...", "date_captured": "..."}, ...],
        "annotations": [{"image_id": 391895, "id": 770337,
                         "caption": "A man with a red helmet on a small moped on a dirt road. "}, ...]}

   Captions end in spaces or newlines ("A bicycle replica with a clock as the front wheel.\\n"): stripped. These
   files carry COCO's official train/val membership (the image's folder, visible in its path) but not Karpathy's
   split, which published results use: their records have no split label, so `--split random` splits them and
   `--split karpathy` says, in one line, to get Karpathy's `dataset_coco.json` (`splits.py`). When the 2014 and the
   2017 files are both there, the 2014 ones are read (Karpathy's names are 2014 names).

When Karpathy's file and the official annotations are both present, Karpathy's is read: it has the split labels
and the same captions. Images are looked for in the folder given (or the annotation file's folder, or the one above
it), or in its `images/` subfolder. Every layout's report says `dataset = "coco"`: with Karpathy's split, `--test`
prints published COCO results beside ours. Missing images are not an error here: their records go to
`images.drop_bad_images`, which counts them against `--max-bad-fraction`.

Read next: `data/imagefolder.py` (a folder of one's own photos), `data/loading.py` (which layout a folder holds).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from errors import UserError

from .flickr30k import (
    Row,
    clean_captions,
    karpathy_rows,
    merge_rows,
    paused_gc,
    read_karpathy_json,
    read_text,
    rows_to_records,
)
from .records import ImageRecord, LoadReport

KARPATHY_FILE = "dataset_coco.json"
# captions_train2014.json, captions_val2017.json, ...: (train|val) and the year name the image folder they describe.
OFFICIAL_FILE = re.compile(r"captions_(train|val)(2014|2017)\.json")
YEARS = ("2014", "2017")  # the order they are tried in: Karpathy's file names are 2014 names
LAYOUT_KARPATHY = "coco-karpathy-json"
LAYOUT_KARPATHY_2017 = "coco-karpathy-json (2017 folders)"
LAYOUT_OFFICIAL = "coco-captions-json"
DOWNLOAD_PAGE = "https://cocodataset.org/#download"
LAYOUTS = (
    "COCO: Karpathy's dataset_coco.json beside train2014/ and val2014/ (or train2017/ and val2017/), or COCO's "
    "annotations/captions_train2014.json and captions_val2014.json (or the 2017 ones) beside those folders"
)


@dataclass(frozen=True)
class CocoFiles:
    """What `find_coco` found: the layout, its annotation files, and the folder that holds `train2014/` and
    `val2014/` (or `train2017/` and `val2017/`)."""

    layout: str
    annotations: tuple[Path, ...]
    image_root: Path


# ---------------------------------------------------------------------------------------------------------------------
# Finding the files


def find_coco(path: Path) -> CocoFiles | None:
    """COCO's annotation files in `path` (a folder, or one of the files) and the folder of its images; None when
    `path` holds none. Karpathy's `dataset_coco.json` is looked for in the folder and its immediate subfolders (where
    `caption_datasets.zip` unpacks), the official files in the folder and its `annotations/`."""
    if path.is_file():
        karpathy = [path] if path.name == KARPATHY_FILE else []
        official = [path] if OFFICIAL_FILE.fullmatch(path.name) else []
        roots = [path.parent, path.parent.parent]  # the file may sit in annotations/ beside the image folders
    else:
        folders = [path, *sorted(p for p in path.iterdir() if p.is_dir())]
        karpathy = [folder / KARPATHY_FILE for folder in folders if (folder / KARPATHY_FILE).is_file()]
        annotation_folders = [folder for folder in (path, path / "annotations") if folder.is_dir()]
        official = sorted(
            f for folder in annotation_folders for f in folder.iterdir() if OFFICIAL_FILE.fullmatch(f.name)
        )
        # The images beside the folder given, or beside Karpathy's file when it is one level down.
        roots = [path, *(f.parent for f in karpathy[:1] if f.parent != path)]
    roots += [root / "images" for root in roots]  # some tools keep them in images/train2014/
    if karpathy:
        return _karpathy_layout(karpathy[0], roots)
    if official:
        return _official_layout(official, roots)
    return None


def _image_root(roots: list[Path], year: str) -> Path | None:
    """The first of `roots` that holds `train{year}/` or `val{year}/`."""
    return next((root for root in roots if (root / f"train{year}").is_dir() or (root / f"val{year}").is_dir()), None)


def _karpathy_layout(annotation: Path, roots: list[Path]) -> CocoFiles | None:
    for year in YEARS:
        if (root := _image_root(roots, year)) is not None:
            return CocoFiles(LAYOUT_KARPATHY if year == "2014" else LAYOUT_KARPATHY_2017, (annotation,), root)
    if any(f != annotation for f in annotation.parent.glob("dataset_*.json")):
        # Karpathy's caption_datasets.zip unpacked whole (dataset_flickr30k.json beside it) without COCO's images:
        # another set's folder, read by the other layouts.
        return None
    raise UserError(
        f"found {annotation} but no COCO image folders train2014/ and val2014/ (or train2017/ and val2017/) in "
        f"{roots[0]}; unzip train2014.zip and val2014.zip from {DOWNLOAD_PAGE} there"
    )


def _official_layout(annotations: list[Path], roots: list[Path]) -> CocoFiles:
    for year in YEARS:
        of_year = tuple(f for f in annotations if described_folder(f).endswith(year))
        if of_year and (root := _image_root(roots, year)) is not None:
            return CocoFiles(LAYOUT_OFFICIAL, of_year, root)
    names = ", ".join(f.name for f in annotations)
    raise UserError(
        f"found {names} but not the image folders they describe (train2014/ and val2014/, or train2017/ and "
        f"val2017/) in {roots[0]}; unzip the image zips from {DOWNLOAD_PAGE} there"
    )


# ---------------------------------------------------------------------------------------------------------------------
# Reading them


def described_folder(annotation: Path) -> str:
    """The image folder an official captions file describes: `captions_val2014.json` -> `val2014`."""
    return annotation.stem.removeprefix("captions_")


def parse_captions_json(path: Path, report: LoadReport) -> list[Row]:
    """Rows of an official `captions_{train,val}{2014,2017}.json`: its `images` joined to its `annotations` by id.

    Each file name gets the folder the file describes (`captions_val2014.json` -> `val2014/`), so the rows' names
    are paths relative to the image root, as Karpathy's `filepath/filename` are.
    """
    folder = described_folder(path)
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err}); expected COCO's captions file") from err
    images = data.get("images") if isinstance(data, dict) else None
    annotations = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(images, list) or not isinstance(annotations, list):
        raise UserError(f"{path} needs 'images' and 'annotations' lists, as COCO's captions_*.json files have")
    rows: dict[int, Row] = {}
    for i, image in enumerate(images):
        if not isinstance(image, dict) or not isinstance(image.get("id"), int) or not _is_name(image.get("file_name")):
            report.skip_row(f"{path.name} images[{i}]: no id or file_name")
            continue
        rows[image["id"]] = Row(f"{folder}/{image['file_name']}", [], cocoid=image["id"])
    captions: dict[int, list] = {image_id: [] for image_id in rows}
    for j, annotation in enumerate(annotations):
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        if not isinstance(image_id, int) or image_id not in captions:
            report.skip_row(f"{path.name} annotations[{j}]: image_id {image_id!r} is not one of its images")
            continue
        captions[image_id].append(annotation.get("caption"))
    for image_id, row in rows.items():
        row.captions = clean_captions(captions[image_id], report)
    return list(rows.values())


def _is_name(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def in_2017_folders(rows: list[Row], image_root: Path, report: LoadReport) -> list[Row]:
    """Karpathy's rows renamed to COCO 2017's files, `{cocoid:012d}.jpg` in whichever of `train2017/` and `val2017/`
    holds it (his test images are in both)."""
    folder_of: dict[str, str] = {}  # file name -> folder, from one listing of each folder (not a stat per image)
    for folder in ("train2017", "val2017"):
        if (image_root / folder).is_dir():
            folder_of.update(dict.fromkeys(os.listdir(image_root / folder), folder))
    renamed = []
    for row in rows:
        if row.cocoid is None:
            report.skip_row(f"{row.filename}: no cocoid, so no COCO 2017 file name")
            continue
        name = f"{row.cocoid:012d}.jpg"
        # In neither folder: it keeps a path in train2017/ (where most images are), and is reported missing there.
        row.filename = f"{folder_of.get(name, 'train2017')}/{name}"
        renamed.append(row)
    return renamed


def read_coco(path: Path, found: CocoFiles) -> tuple[list[ImageRecord], LoadReport]:
    """The records of the COCO layout `found` in `path` (by `find_coco`); images are located, not decoded."""
    report = LoadReport(source=str(path), layout=found.layout, dataset="coco")
    with paused_gc():  # millions of objects and no cycles: see paused_gc
        if found.layout == LAYOUT_OFFICIAL:
            rows = [row for annotation in found.annotations for row in parse_captions_json(annotation, report)]
        else:
            annotation = found.annotations[0]
            rows = karpathy_rows(read_karpathy_json(annotation)["images"], annotation, report)
            if found.layout == LAYOUT_KARPATHY_2017:
                rows = in_2017_folders(rows, found.image_root, report)
        merged = merge_rows(rows)
        if not merged:
            files = ", ".join(str(f) for f in found.annotations)
            raise UserError(f"{files} lists no images; accepted layouts: {LAYOUTS}")
        return rows_to_records(merged, lambda row: found.image_root / row.filename, report), report
