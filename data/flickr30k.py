"""Flickr30k: 31,783 Flickr photos with 5 human captions each, read from whichever layout you have.

Flickr30k (Young et al. 2014, https://aclanthology.org/Q14-1006/) is distributed in several shapes, and all
three common ones are detected automatically from a local directory (or from the file itself):

1. Karpathy's split file `dataset_flickr30k.json` (from https://cs.stanford.edu/people/karpathy/deepimagesent/):
   `images[].filename`, `images[].split` (train/val/test = 29,000 / 1,014 / 1,000) and
   `images[].sentences[].raw`. Any `dataset_*.json` in this format is accepted: the generated shapes set
   (`shapes.py`) is written this way too, with extra `images[].qa` question-answer pairs that are read here.
2. A CSV with one row per image: `raw` (a JSON list of the 5 captions), `filename`, `split`. This is
   `flickr_annotations_30k.csv` from the hub dataset `nlphuji/flickr30k`.
3. Kaggle's pipe-separated `results.csv` (`image_name| comment_number| comment`, one row per caption) next to
   `flickr30k_images/`. Two traps: the column names after the first start with a space, and one row (image
   `2199200615.jpg`, around row 19,999) lost a separator, so its number and caption share one column
   (`2199200615.jpg| 4   A dog runs across the grass .`). We repair such rows and report them. Its captions
   are PTB-tokenised ("grass .", "does n't"): they are turned back into natural text (`data/detokenize.py`), so
   training and reference text match the other layouts'. This layout has no split labels.

The images are looked for beside the annotation file: `flickr30k_images/`, `flickr30k-images/`, `images/`,
`Images/`, the same folder, or any other subfolder, whichever holds the listed files.

The report names the dataset (`LoadReport.dataset = "flickr30k"`) when the layout says it is Flickr30k: always for
the two CSVs, and for a Karpathy file whose `dataset` field says so (the shapes set's says "shapes").

The annotation rows (`Row`) and the helpers that clean captions and question-answer pairs and turn rows into records
are shared with the other local layouts: COCO (`coco.py`, which reads its Karpathy file with `read_karpathy_json`)
and a folder of one's own photos (`imagefolder.py`). Which layout a local folder holds is decided in `loading.py`.

From the hub (`source="flickr30k"` or `"hf:OWNER/REPO"`), `huggingface_hub.hf_hub_download` fetches the
annotation CSV and `flickr30k-images.zip` into the usual Hugging Face cache (it honours `HF_HOME`,
`HF_TOKEN` and `HF_HUB_OFFLINE=1`), and the zip is extracted once into our cache directory. We do not use
the `datasets` library: this repo ships a loading script, which `datasets>=4` refuses to run.

Parsing never decodes images; missing or broken files are dropped afterwards by `images.drop_bad_images`.

Read next: `data/coco.py` (the same Karpathy format for COCO), `data/splits.py` (train/val/test),
`data/images.py` (what happens to a bad image).
"""

from __future__ import annotations

import csv
import gc
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HFValidationError

from errors import UserError
from runtime.files import build_folder_once

from .detokenize import detokenize
from .records import ImageRecord, LoadReport

LAYOUTS = (
    "(1) a Karpathy split file dataset_*.json (images[].filename, .split, .sentences[].raw) with the images "
    "in flickr30k_images/, images/ or beside it; "
    "(2) a CSV with columns raw (JSON list of captions), filename, split, such as the hub's "
    "flickr_annotations_30k.csv, with the images beside it; "
    "(3) Kaggle's pipe-separated results.csv (image_name| comment_number| comment) with flickr30k_images/"
)

DEFAULT_HUB_REPO = "nlphuji/flickr30k"
HUB_ANNOTATIONS = "flickr_annotations_30k.csv"
HUB_IMAGES_ZIP = "flickr30k-images.zip"

# `datasets` writes these beside a saved dataset; they are never Karpathy split files, despite the name.
NOT_KARPATHY_FILES = ("dataset_info.json", "dataset_infos.json")
# Karpathy's `dataset` field -> our dataset name (LoadReport.dataset); others ("flickr8k", "shapes") get none.
KARPATHY_DATASETS = {"flickr30k": "flickr30k", "coco": "coco"}
# How many entries of a folder an error message names.
LISTED_ENTRIES = 6

# Folder names that usually hold the images, tried first (then the annotation's own folder, then any subfolder).
IMAGE_DIR_NAMES = ("flickr30k_images", "flickr30k-images", "images", "Images")
RESULTS_CSV_COLUMNS = ["image_name", "comment_number", "comment"]
# The broken results.csv row: "<number><spaces><caption>" in the comment_number column.
_MERGED_NUMBER_AND_COMMENT = re.compile(r"\s*(\d+)\s+(.*\S)\s*")


@dataclass
class Row:
    """One image as an annotation file describes it, before we know where the image folder is.

    `filename` is the image's path relative to the folder the layout keeps its images in; `cocoid` is COCO's image
    number when the file gives it (the 2017 folders name their files by it, see coco.py).
    """

    filename: str
    captions: list[str]
    qa: list[tuple[str, str]] = field(default_factory=list)
    split: str | None = None
    cocoid: int | None = None


# ---------------------------------------------------------------------------------------------------------------------
# The three annotation formats


def read_text(path: Path) -> str:
    """The text of an annotation file, or a one-line UserError."""
    try:
        return path.read_text(encoding="utf-8-sig")  # utf-8-sig also accepts a byte-order mark
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}") from err


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while an annotation file becomes records.

    Reading COCO's Karpathy file makes millions of dicts, lists and strings, none of them in a reference cycle. The
    cyclic collector still runs every few hundred allocations and, as the heap grows, walks all of it again and again:
    at COCO's size that was 4.6 of 6.3 s (bench/data_loading.py). Reference counting frees everything as before.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _without_tokens(obj: dict) -> dict:
    """`json.loads` object hook: drop a sentence's `tokens` list as soon as the sentence is parsed.

    COCO's `dataset_coco.json` is about 150 MB, most of it the 616,767 sentences' lists of lower-cased tokens,
    which we never use (we tokenize `raw` ourselves). Parsed whole, the token strings would take several hundred MB;
    dropped here, each list is freed as soon as its sentence is built, and the file is still parsed once, by the
    json module's C parser.
    """
    obj.pop("tokens", None)
    return obj


def read_karpathy_json(path: Path) -> dict:
    """The parsed contents of a Karpathy-style `dataset_*.json` (sentences without their `tokens`), checked to hold
    an `images` list."""
    try:
        data = json.loads(read_text(path), object_hook=_without_tokens)
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err}); expected a Karpathy split file") from err
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise UserError(f"{path} has no 'images' list; expected a Karpathy split file like dataset_flickr30k.json")
    return data


def karpathy_rows(images: list, path: Path, report: LoadReport) -> list[Row]:
    """Rows of a Karpathy file's `images` list; `qa` is read when present (the shapes set has it)."""
    rows = []
    for i, item in enumerate(images):
        where = f"{path.name} images[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("filename"), str) or not item["filename"]:
            report.skip_row(f"{where}: no filename")
            continue
        sentences = item.get("sentences", [])
        qa_items = item.get("qa", [])
        if not isinstance(sentences, list) or not isinstance(qa_items, list):
            report.skip_row(f"{where}: 'sentences' or 'qa' is not a list")
            continue
        captions = [s.get("raw") if isinstance(s, dict) else None for s in sentences]
        # COCO's Karpathy file adds a `filepath` (train2014/val2014) subfolder; Flickr30k's has none.
        filename = item["filename"]
        if isinstance(item.get("filepath"), str) and item["filepath"]:
            filename = f"{item['filepath']}/{filename}"
        split = item.get("split") if isinstance(item.get("split"), str) else None
        cocoid = item.get("cocoid") if isinstance(item.get("cocoid"), int) else None
        qa = clean_qa(qa_items, where, report)
        rows.append(Row(filename, clean_captions(captions, report), qa, split, cocoid))
    return rows


def parse_karpathy_json(path: Path, report: LoadReport) -> list[Row]:
    """Rows of a Karpathy-style `dataset_*.json`; names the dataset in `report` when the file's `dataset` field does."""
    data = read_karpathy_json(path)
    report.dataset = KARPATHY_DATASETS.get(str(data.get("dataset")), "")
    return karpathy_rows(data["images"], path, report)


def parse_annotations_csv(path: Path, report: LoadReport) -> list[Row]:
    """Rows of a one-row-per-image CSV whose `raw` column is a JSON list of captions (the hub's layout)."""
    report.dataset = "flickr30k"
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader, [])]
        if "raw" not in header or "filename" not in header:
            raise UserError(f"{path} needs 'raw' and 'filename' columns, found {header}")
        col = {name: i for i, name in enumerate(header)}
        rows = []
        for row in reader:
            where = f"{path.name} line {reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue  # blank line
            if len(row) != len(header):
                report.skip_row(f"{where}: {len(row)} columns instead of {len(header)}")
                continue
            try:
                captions = json.loads(row[col["raw"]])
            except json.JSONDecodeError:
                captions = None
            filename = row[col["filename"]].strip()
            if not isinstance(captions, list) or not filename:
                report.skip_row(f"{where}: 'raw' is not a JSON list of captions or 'filename' is empty")
                continue
            split = (row[col["split"]].strip() or None) if "split" in col else None
            rows.append(Row(filename, clean_captions(captions, report), split=split))
    return rows


def parse_results_csv(path: Path, report: LoadReport) -> list[Row]:
    """Rows of Kaggle's pipe-separated `results.csv` (one line per caption), repairing the merged row."""
    report.dataset = "flickr30k"
    by_name: dict[str, Row] = {}
    with path.open(encoding="utf-8-sig") as f:
        # Split by hand rather than with `csv`: captions contain quote characters that csv would interpret.
        header = [name.strip() for name in f.readline().rstrip("\r\n").split("|")]
        if header != RESULTS_CSV_COLUMNS:
            raise UserError(f"{path} should start with the header 'image_name| comment_number| comment'")
        for line_no, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            where = f"{path.name} line {line_no}: {line.strip()[:70]!r}"
            parts = line.split("|")
            if len(parts) >= 3:
                name, number, comment = parts[0], parts[1], "|".join(parts[2:])  # a '|' inside a caption
            elif len(parts) == 2 and (merged := _MERGED_NUMBER_AND_COMMENT.fullmatch(parts[1])):
                name, number, comment = parts[0], merged[1], merged[2]
                report.repair_row(where)
            else:
                report.skip_row(where)
                continue
            name = name.strip()
            if not name or not number.strip().isdigit():
                report.skip_row(where)
                continue
            row = by_name.setdefault(name, Row(name, []))
            # Its captions are PTB-tokenised ("A dog runs across the grass ."): natural text, as in the other layouts.
            row.captions.extend(detokenize(c) for c in clean_captions([comment], report))
    return list(by_name.values())


def clean_captions(captions: list, report: LoadReport) -> list[str]:
    """Strip whitespace (real captions end in spaces and newlines); drop (and count) empty or non-text captions."""
    kept = [c.strip() for c in captions if isinstance(c, str) and c.strip()]
    report.empty_captions_dropped += len(captions) - len(kept)
    return kept


def clean_qa(items: list, where: str, report: LoadReport) -> list[tuple[str, str]]:
    """(question, answer) pairs of a list of {"question", "answer"} objects, stripped; a bad entry is skipped and
    counted as a malformed row at `where`."""
    pairs = []
    for pair in items:
        if isinstance(pair, dict) and isinstance(pair.get("question"), str) and isinstance(pair.get("answer"), str):
            pairs.append((pair["question"].strip(), pair["answer"].strip()))
        else:
            report.skip_row(f"{where}: bad qa entry {str(pair)[:60]}")
    return pairs


# ---------------------------------------------------------------------------------------------------------------------
# Finding the annotation file and the image folder


def _looks_like_annotations_csv(path: Path) -> bool:
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        header = {name.strip() for name in next(csv.reader(f), [])}
    return {"raw", "filename"} <= header


def _looks_like_results_csv(path: Path) -> bool:
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        return [name.strip() for name in f.readline().rstrip("\r\n").split("|")] == RESULTS_CSV_COLUMNS


def find_layout(path: Path) -> tuple[str, Path] | None:
    """Find the annotation file in `path` (a folder, or the file itself) and name its layout; None when there is none.

    Returns `("karpathy-json" | "annotations-csv" | "results-csv", annotation_file)`. Looks in the folder and
    its immediate subfolders (Kaggle puts `results.csv` inside `flickr30k_images/`).
    """
    if path.is_file():
        candidates = [path]
    else:
        folders = [path] + sorted(p for p in path.iterdir() if p.is_dir())
        candidates = [f for d in folders for f in sorted(d.iterdir()) if f.suffix in (".json", ".csv")]

    if path.is_file():
        jsons = [path] if path.suffix == ".json" else []
    else:  # Karpathy names his files dataset_flickr30k.json, dataset_coco.json, ...
        jsons = [f for f in candidates if f.suffix == ".json" and f.name.startswith("dataset_")]
        jsons = [f for f in jsons if f.name not in NOT_KARPATHY_FILES]
    if len(jsons) > 1:
        preferred = [f for f in jsons if f.name == "dataset_flickr30k.json"]
        if len(preferred) != 1:
            raise UserError(
                f"found several split files in {path} ({', '.join(str(f) for f in jsons[:4])}); "
                "pass the one you want as the data path"
            )
        jsons = preferred
    if jsons:
        return "karpathy-json", jsons[0]
    csvs = [f for f in candidates if f.suffix == ".csv"]
    for f in csvs:
        if _looks_like_annotations_csv(f):
            return "annotations-csv", f
    for f in csvs:
        if _looks_like_results_csv(f):
            return "results-csv", f
    return None


def detect_layout(path: Path) -> tuple[str, Path]:
    """`find_layout`, or a one-line `UserError` naming the accepted layouts and what `path` holds instead."""
    found = find_layout(path)
    if found is None:
        contents = describe_contents(path)
        raise UserError(
            f"no Flickr30k-style annotations found in {path}; accepted layouts: {LAYOUTS}; found {contents}"
        )
    return found


def describe_contents(path: Path, limit: int = LISTED_ENTRIES) -> str:
    """What a folder holds, for an error message: its first few entries (folders marked with /) and how many more."""
    if path.is_file():
        return f"the file {path.name}"
    try:
        entries = sorted(path.iterdir())
    except OSError as err:
        return f"nothing readable ({err.strerror})"
    if not entries:
        return "an empty folder"
    names = [f"{entry.name}/" if entry.is_dir() else entry.name for entry in entries[:limit]]
    more = f" and {len(entries) - limit:,} more" if len(entries) > limit else ""
    return f"{', '.join(names)}{more}"


def find_image_dir(root: Path, filenames: list[str], annotation: Path) -> Path:
    """Return the folder under `root` (or `root` itself) that holds the most of the listed image files."""
    named = [root / name for name in IMAGE_DIR_NAMES]
    others = sorted(p for p in root.iterdir() if p.is_dir() and p not in named)
    candidates = [d for d in [*named, root, *others] if d.is_dir()]
    # Probe a spread of up to 20 names: cheap, and robust to a few missing files.
    step = max(1, len(filenames) // 20)
    probe = filenames[::step][:20]
    best_dir, best_hits = root, 0
    for folder in candidates:
        hits = sum((folder / name).is_file() for name in probe)
        if hits > best_hits:
            best_dir, best_hits = folder, hits
    if best_hits == 0:
        zips = [z.name for z in root.glob("*.zip")]
        hint = f" (found {', '.join(zips)}: unzip it there first)" if zips else ""
        raise UserError(
            f"none of the images listed in {annotation} (e.g. {probe[0] if probe else '?'}) are in {root} or its "
            f"subfolders; put them in {root / 'flickr30k_images'}/ or {root / 'images'}/{hint}"
        )
    return best_dir


def merge_rows(rows: Iterable[Row]) -> dict[str, Row]:
    """Rows by file name; the same image listed twice keeps all its captions and questions (and its first label)."""
    merged: dict[str, Row] = {}
    for row in rows:
        if row.filename in merged:
            merged[row.filename].captions.extend(row.captions)
            merged[row.filename].qa.extend(row.qa)
        else:
            merged[row.filename] = Row(row.filename, list(row.captions), list(row.qa), row.split, row.cocoid)
    return merged


def rows_to_records(rows: dict[str, Row], path_of: Callable[[Row], Path], report: LoadReport) -> list[ImageRecord]:
    """One record per merged row, at `path_of(row)`; an image left with nothing to learn from is skipped.

    The record's `image_id` is its file's stem: merging sources goes by file name (loading.py `merge_sources`).
    """
    report.images_found = len(rows)
    records = []
    for row in rows.values():
        path = path_of(row)
        if not row.captions and not row.qa:
            report.skip_image(path, "no captions")
            continue
        records.append(ImageRecord(path.stem, path, row.captions, row.qa, row.split))
    return records


def _build_records(rows: list[Row], image_root: Path, annotation: Path, report: LoadReport) -> list[ImageRecord]:
    """Merge rows per image, find the image folder, attach each image's path."""
    merged = merge_rows(rows)
    if not merged:
        raise UserError(f"{annotation} lists no images; accepted layouts: {LAYOUTS}")
    image_dir = find_image_dir(image_root, list(merged), annotation)
    return rows_to_records(merged, lambda row: image_dir / row.filename, report)


_PARSERS = {
    "karpathy-json": parse_karpathy_json,
    "annotations-csv": parse_annotations_csv,
    "results-csv": parse_results_csv,
}


def read_local(path: Path) -> tuple[list[ImageRecord], LoadReport]:
    """Read a Flickr30k-style dataset (any of the three layouts) from a local folder or annotation file.

    Images are located but not decoded; pass the records to `images.drop_bad_images` for that. (`loading.read_local`
    reads a local folder in any layout: COCO's, these, or an imagefolder.)
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"data path {path} does not exist; pass a folder in one of these layouts: {LAYOUTS}")
    return read_layout(path, *detect_layout(path))


def read_layout(path: Path, layout: str, annotation: Path) -> tuple[list[ImageRecord], LoadReport]:
    """Read `annotation` in `layout` (as `find_layout` named it), with its images found beside it."""
    report = LoadReport(source=str(path), layout=layout)
    with paused_gc():
        rows = _PARSERS[layout](annotation, report)
        return _build_records(rows, annotation.parent, annotation, report), report


# ---------------------------------------------------------------------------------------------------------------------
# The hub


def extract_once(zip_path: Path, target: Path) -> Path:
    """Extract `zip_path` into `target` unless that was already done, atomically and by one process at a time
    (`runtime.files.build_folder_once`: a temporary folder renamed into place, under a file lock; a refused write is
    one line with the size of the whole extraction). A damaged zip is one line saying to download it again."""
    if target.is_dir():
        return target
    try:
        with zipfile.ZipFile(zip_path) as archive:  # reads the central directory only
            needed = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as err:
        raise UserError(f"{zip_path} is not a valid zip file; delete it from the Hugging Face cache and retry") from err

    def extract(folder: Path) -> None:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(folder)  # zipfile drops absolute paths and '..' parts of member names

    return build_folder_once(target, f"the extraction of {zip_path.name}", extract, needed)


class HubFilesUnavailable(UserError):
    """The hub could not give the two files of the Flickr30k layout (unreachable, offline and not cached, absent)."""


def download_flickr30k(repo_id: str, cache_dir: Path, *, local_files_only: bool = False) -> tuple[Path, Path]:
    """Fetch the annotation CSV and image zip of a hub dataset repo; return (csv, folder of extracted images).

    The downloads go to the Hugging Face cache (`HF_HOME`); the extracted images to
    `cache_dir/hub/OWNER--REPO/images`. `local_files_only`: take them from that cache only, without asking the hub
    (`data/parquet.py` passes it when the hub could not be reached a moment before).
    """
    files = [HUB_ANNOTATIONS, HUB_IMAGES_ZIP]
    try:
        csv_path, zip_path = [
            Path(hf_hub_download(repo_id, name, repo_type="dataset", local_files_only=local_files_only))
            for name in files
        ]
    except HFValidationError as err:
        raise UserError(f"{repo_id!r} is not a valid hub repo id; use hf:OWNER/REPO") from err
    except (OSError, EntryNotFoundError) as err:  # no network, offline mode, 404, gated repo, disk full...
        offline = " (HF_HUB_OFFLINE is set)" if hf_constants.HF_HUB_OFFLINE else ""
        reason = (str(err).strip().splitlines() or [""])[0][:150].rstrip(".")
        raise HubFilesUnavailable(
            f"could not get {' and '.join(files)} from the hub dataset repo {repo_id}{offline}: "
            f"{type(err).__name__}: {reason}. Download them elsewhere, or pass a local Flickr30k folder instead "
            f"with --data /path/to/flickr30k (accepted layouts: {LAYOUTS})"
        ) from err
    images = extract_once(zip_path, Path(cache_dir) / "hub" / repo_id.replace("/", "--") / "images")
    return csv_path, images


def read_hub(repo_id: str, cache_dir: Path, *, local_files_only: bool = False) -> tuple[list[ImageRecord], LoadReport]:
    """Read Flickr30k from a hub dataset repo laid out like `nlphuji/flickr30k` (layout 2 + an image zip).

    Other hub layouts (Parquet, as `datasets` writes it) are told apart from this one in `data/parquet.py`."""
    csv_path, image_root = download_flickr30k(repo_id, cache_dir, local_files_only=local_files_only)
    report = LoadReport(source=f"hf:{repo_id}", layout="annotations-csv")
    rows = parse_annotations_csv(csv_path, report)  # names the dataset "flickr30k": this CSV is Flickr30k's
    return _build_records(rows, image_root, csv_path, report), report
