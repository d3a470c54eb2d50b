"""A folder of one's own photos and their captions, in Hugging Face's `imagefolder` layout.

`datasets.load_dataset("imagefolder", data_dir=...)` reads images with a metadata file beside them
(https://huggingface.co/docs/datasets/image_dataset#imagefolder, https://huggingface.co/docs/hub/datasets-image);
`--data FOLDER` reads the same folder, with the same conventions:

    my_photos/                              my_photos/
      metadata.jsonl                          README.md          (optional: a card whose `configs:` set the splits)
      beach.jpg                               train/
      trip/dog.png                              metadata.csv
                                                a.jpg
    metadata.jsonl, one object a line:          b.jpg
      {"file_name": "beach.jpg",              validation/
       "text": "Waves on an empty beach."}      metadata.csv
      {"file_name": "trip/dog.png",             c.jpg
       "captions": ["A dog.", "A brown dog."],
       "qa": [{"question": "What animal is it?", "answer": "a dog"}]}

- The metadata file is `metadata.jsonl` (one JSON object a line), `metadata.csv` or `metadata.parquet`, in the folder
  or any folder under it, all of one format (as `datasets` requires). Its `file_name` column is the image's path
  relative to the metadata file's folder, and may not leave the folder (`..`, an absolute path); a single
  `*_file_name` column (`image_file_name`) is taken too, as in `datasets`, and `--image-column NAME` names another.
- Captions come from the first of the columns `text`, `caption` and `captions` that the file has, or from the one
  `--caption-column NAME` names. A value is one caption or a list of them; in a CSV a list is written as JSON
  (`"[""A dog."", ""A brown dog.""]"`). Several rows of one image add up. An empty or non-text caption is dropped and
  counted in the load report.
- Question-answer pairs (for `--tasks qa`) come from `question` and `answer` columns (one pair a row) and from a `qa`
  column holding a list of {"question", "answer"} objects (JSON in a CSV).
- Splits come from the folders, with the names `datasets` gives splits: a folder named `train` or `training`;
  `validation`, `valid`, `val` or `dev`; `test`, `testing`, `eval` or `evaluation` (or one of these joined to other
  words by `-`, `.`, `_`, a space or a digit: `train-2023/`, `my_test/`), at any depth, labels the images under it
  "train", "val" or "test". A split folder may hold its own metadata file, or one metadata file at the root may list
  `train/a.jpg`: `datasets` itself (5.2) ignores a root metadata file once there are split folders, we read it.
- A dataset card's `configs:` block (README.md's YAML front matter, `card.py`) overrides the folders, as in
  `datasets`: an image's split is the card's split whose `data_files` patterns match its path (or its metadata
  file's path), in the config marked default; an image no pattern matches is not part of the data.
- A `split` column labels the images when nothing above does; one that disagrees with the image's folder (or the
  card) is an error. With no labels at all, records have `split=None`: `--split random` (or `auto`) splits them,
  `--split karpathy` (the data's own labels; the name is historical) says they have none.

Bad input is one `UserError` line, and nothing is ever written into the folder: a metadata file without a file-name
column or without any text column (the message names its columns, the accepted names and `--caption-column`), split
sources that disagree, metadata files of two formats. A row that cannot be read (bad JSON, no file name, a path out of
the folder) is skipped and counted; images listed but missing go to `images.drop_bad_images` with the others
(`--max-bad-fraction`).

Read next: `data/card.py` (the dataset card's configs), `data/loading.py` (which layout a folder holds).
"""

from __future__ import annotations

import csv
import json
import os
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path

from errors import UserError

from .card import card_configs
from .flickr30k import Row, clean_captions, clean_qa, merge_rows, read_text, rows_to_records
from .records import Columns, ImageRecord, LoadReport

LAYOUT = "imagefolder"
METADATA_FILES = ("metadata.jsonl", "metadata.csv", "metadata.parquet")  # datasets' METADATA_FILENAMES
FILE_NAME_COLUMN = "file_name"
TEXT_COLUMNS = ("text", "caption", "captions")
QA_COLUMNS = ("question", "answer")
QA_LIST_COLUMN = "qa"
SPLIT_COLUMN = "split"
# The split names `datasets` recognises in folder names (datasets/data_files.py SPLIT_KEYWORDS), and ours for them.
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "validation": "val",
    "valid": "val",
    "val": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
    "eval": "test",
    "evaluation": "test",
}
# A folder named for a split: the keyword alone, or joined to other words by one of datasets' separators
# (`{keyword}[-._ 0-9]*`, `*[-._ 0-9]{keyword}`, ... in datasets' KEYWORDS_IN_DIR_NAME_BASE_PATTERNS).
_SEPARATORS = "[-._ 0-9]"
_SPLIT_FOLDER = re.compile(rf"(?:.*{_SEPARATORS})?({'|'.join(SPLIT_NAMES)})(?:{_SEPARATORS}.*)?")
LAYOUTS = (
    "an imagefolder: images with a metadata.jsonl, metadata.csv or metadata.parquet whose file_name column gives "
    "each image's path and a text, caption or captions column its captions"
)


# ---------------------------------------------------------------------------------------------------------------------
# Finding the metadata files


def _visible(name: str) -> bool:
    """Hidden folders (`.git`, `.cache`) and `__pycache__`-like ones are not data, as in `datasets`."""
    return not name.startswith((".", "__"))


def _walk_metadata(folder: Path) -> Iterator[Path]:
    """The metadata files under `folder`, in a stable order (sorted folder by folder)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        for name in sorted(filenames):
            if name in METADATA_FILES:
                yield Path(dirpath) / name


def is_imagefolder(path: Path) -> bool:
    """True when `path` is a metadata file or a folder with one somewhere under it (the walk stops at the first)."""
    if path.is_file():
        return path.name in METADATA_FILES
    return next(_walk_metadata(path), None) is not None


def find_metadata_files(path: Path) -> tuple[Path, list[Path]]:
    """(the folder's root, its metadata files); `path` may be a metadata file, then the only one."""
    if path.is_file():
        return path.parent, [path]
    files = list(_walk_metadata(path))
    formats = sorted({f.suffix for f in files})
    if len(formats) > 1:
        examples = ", ".join(str(next(f for f in files if f.suffix == s).relative_to(path)) for s in formats)
        raise UserError(
            f"{path} has metadata files of {len(formats)} formats ({examples}); datasets' imagefolder needs one "
            "format for all of them: keep one"
        )
    return path, files


# ---------------------------------------------------------------------------------------------------------------------
# Reading one metadata file into (where, row) pairs and its column names


def _read_jsonl(path: Path, report: LoadReport) -> tuple[list[str], list[tuple[str, dict]]]:
    columns: dict[str, None] = {}  # in order of first appearance
    rows = []
    for line_no, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {line_no}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            report.skip_row(f"{where}: not valid JSON")
            continue
        if not isinstance(row, dict):
            report.skip_row(f"{where}: not a JSON object")
            continue
        columns.update(dict.fromkeys(row))
        rows.append((where, row))
    return list(columns), rows


def _read_csv(path: Path, report: LoadReport) -> tuple[list[str], list[tuple[str, dict]]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader, [])]
        rows = []
        for cells in reader:
            where = f"{path.name} line {reader.line_num}"
            if not any(cell.strip() for cell in cells):
                continue  # a blank line
            if len(cells) != len(header):
                report.skip_row(f"{where}: {len(cells)} columns instead of {len(header)}")
                continue
            rows.append((where, dict(zip(header, cells, strict=True))))
    return header, rows


def _read_parquet(path: Path, report: LoadReport) -> tuple[list[str], list[tuple[str, dict]]]:
    import pyarrow.parquet as pq  # only this metadata format needs pyarrow: not imported for every load

    table = pq.read_table(path)
    return table.column_names, [(f"{path.name} row {i}", row) for i, row in enumerate(table.to_pylist())]


_READERS = {".jsonl": _read_jsonl, ".csv": _read_csv, ".parquet": _read_parquet}


# ---------------------------------------------------------------------------------------------------------------------
# Which column is which


def _file_name_column(columns: list[str], chosen: str | None, path: Path) -> str:
    """`--image-column`, else `file_name`, else the one `*_file_name` column, as `datasets` finds the image column."""
    if chosen is not None:
        if chosen not in columns:
            raise UserError(f"{path} has no column {chosen!r} (--image-column); its columns: {', '.join(columns)}")
        return chosen
    if FILE_NAME_COLUMN in columns:
        return FILE_NAME_COLUMN
    suffixed = [c for c in columns if c.endswith(f"_{FILE_NAME_COLUMN}")]
    if len(suffixed) == 1:
        return suffixed[0]
    raise UserError(
        f"{path} has no {FILE_NAME_COLUMN} column (its columns: {', '.join(columns) or 'none'}); an imagefolder's "
        f"metadata gives each image's path, relative to the metadata file, in {FILE_NAME_COLUMN} "
        "(or name the column with --image-column)"
    )


def _caption_column(columns: list[str], chosen: str | None, path: Path) -> str | None:
    """`--caption-column`, else the first of text / caption / captions; None for a file of questions only."""
    if chosen is not None:
        if chosen not in columns:
            raise UserError(f"{path} has no column {chosen!r} (--caption-column); its columns: {', '.join(columns)}")
        return chosen
    found = next((c for c in TEXT_COLUMNS if c in columns), None)
    if found is None and not _has_questions(columns):
        raise UserError(
            f"{path} has no text column (its columns: {', '.join(columns) or 'none'}); name the captions column "
            f"{', '.join(TEXT_COLUMNS[:-1])} or {TEXT_COLUMNS[-1]} (a list), or pass --caption-column NAME "
            f"(question-answer pairs: {' and '.join(QA_COLUMNS)} columns, or {QA_LIST_COLUMN})"
        )
    return found


def _has_questions(columns: list[str]) -> bool:
    return set(QA_COLUMNS) <= set(columns) or QA_LIST_COLUMN in columns


# ---------------------------------------------------------------------------------------------------------------------
# One row's values


def _as_list(value: object, from_csv: bool) -> list:
    """A cell as a list of values: a list stays one, a CSV cell holding a JSON list is decoded, anything else is one
    value (a non-text one is dropped and counted by `clean_captions`)."""
    if isinstance(value, list):
        return value
    if from_csv and isinstance(value, str) and value.lstrip().startswith("["):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            decoded = None  # a caption that starts with "[": text after all
        if isinstance(decoded, list):
            return decoded
    return [value]


def _questions(row: dict, where: str, from_csv: bool, report: LoadReport) -> list[tuple[str, str]]:
    """The row's (question, answer) pairs, from `question` and `answer` and from a `qa` list."""
    pairs = []
    question, answer = row.get(QA_COLUMNS[0]), row.get(QA_COLUMNS[1])
    if question or answer:  # a row without a question leaves both empty
        if isinstance(question, str) and isinstance(answer, str) and question.strip() and answer.strip():
            pairs.append((question.strip(), answer.strip()))
        else:
            report.skip_row(f"{where}: a question without an answer (or an answer without a question)")
    items = row.get(QA_LIST_COLUMN)
    if items not in (None, ""):
        items = _as_list(items, from_csv)
        pairs += clean_qa(items, where, report)
    return pairs


def _inside(folder: str, file_name: str) -> str | None:
    """`file_name` (relative to `folder`, itself relative to the root) as a path relative to the root, or None when it
    is absolute or leaves the root (datasets refuses those too)."""
    if "://" in file_name or posixpath.isabs(file_name):
        return None
    relative = posixpath.normpath(posixpath.join(folder, file_name.replace("\\", "/")))
    return None if relative == ".." or relative.startswith("../") else relative


# ---------------------------------------------------------------------------------------------------------------------
# Splits


def folder_split(relative: str) -> str | None:
    """The split the image's folders name ("train", "val", "test"), the outermost first; None when none does."""
    for folder in relative.split("/")[:-1]:
        if match := _SPLIT_FOLDER.fullmatch(folder):
            return SPLIT_NAMES[match[1]]
    return None


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A card's `data_files` glob as a regex over '/'-separated paths: `**` spans folders, `*`, `?`, `[...]` don't."""
    parts = []
    for part in pattern.strip().removeprefix("./").strip("/").split("/"):
        if part == "**":
            parts.append(None)
            continue
        regex = ""
        i = 0
        while i < len(part):
            char, end = part[i], part.find("]", i + 1)
            if char == "*":
                regex += "[^/]*"
            elif char == "?":
                regex += "[^/]"
            elif char == "[" and end > i + 1:  # a class; [!...] negates it, as in fnmatch
                inner = part[i + 1 : end].replace("\\", "\\\\")
                regex += "[" + ("^" + inner[1:] if inner.startswith("!") else inner) + "]"
                i = end
            else:
                regex += re.escape(char)
            i += 1
        parts.append(regex)
    joined = ""
    for k, regex in enumerate(parts):
        last = k == len(parts) - 1
        if regex is None:  # ** : any number of folders (and, at the end, anything below)
            joined += ".*" if last else "(?:[^/]+/)*"
        else:
            joined += regex + ("" if last else "/")
    return re.compile(joined)


def card_patterns(root: Path) -> dict[str, list[re.Pattern[str]]] | None:
    """{our split name: patterns} of the card's default config; None when the folder has no card with configs."""
    configs = card_configs(root)
    if not configs.files:
        return None
    patterns: dict[str, list[re.Pattern[str]]] = {}
    for split, globs in configs.files[configs.default()].items():
        patterns.setdefault(SPLIT_NAMES.get(split, split), []).extend(_glob_regex(g) for g in globs)
    return patterns


def card_split(card: dict[str, list[re.Pattern[str]]], relative: str, metadata: str) -> str | None:
    """The card's split for an image: the first whose patterns match its path, else its metadata file's path."""
    for path in (relative, metadata):
        for split, patterns in card.items():
            if any(p.fullmatch(path) for p in patterns):
                return split
    return None


def _reconcile(place: str | None, labelled: object, relative: str, source: str, where: str) -> str | None:
    """The image's split from its place (`source`: its folder or the card) and from a `split` column: they must
    agree."""
    if labelled in (None, ""):
        return place
    name = str(labelled).strip()
    label = SPLIT_NAMES.get(name.lower(), name)
    if place is not None and label != place:
        raise UserError(
            f"conflicting split sources: {relative} is in the {place!r} split by its {source}, but its row ({where}) "
            f"says split {labelled!r}; drop the split column or move the image"
        )
    return label


# ---------------------------------------------------------------------------------------------------------------------
# The folder


def _rows_of(
    metadata: Path, root: Path, columns: Columns, card: dict[str, list[re.Pattern[str]]] | None, report: LoadReport
) -> list[Row]:
    """The rows of one metadata file, with paths relative to `root` and split labels."""
    names, table = _READERS[metadata.suffix](metadata, report)
    file_column = _file_name_column(names, columns.image, metadata)
    caption_column = _caption_column(names, columns.caption, metadata)
    from_csv = metadata.suffix == ".csv"
    folder = metadata.parent.relative_to(root).as_posix()
    metadata_path = metadata.relative_to(root).as_posix()
    rows = []
    for where, row in table:
        file_name = row.get(file_column)
        if not isinstance(file_name, str) or not file_name.strip():
            report.skip_row(f"{where}: no {file_column}")
            continue
        relative = _inside(folder, file_name.strip())
        if relative is None:
            report.skip_row(f"{where}: {file_column} {file_name!r} is not a relative path inside {root}")
            continue
        if card is None:
            place, source = folder_split(relative), "folder"
        else:
            place, source = card_split(card, relative, metadata_path), "dataset card"
            if place is None:
                continue  # not in the card's data files: not part of the data, as in datasets
        split = _reconcile(place, row.get(SPLIT_COLUMN), relative, source, where)
        captions = clean_captions(_as_list(row.get(caption_column), from_csv), report) if caption_column else []
        rows.append(Row(relative, captions, _questions(row, where, from_csv, report), split))
    return rows


def read_imagefolder(path: Path, columns: Columns | None = None) -> tuple[list[ImageRecord], LoadReport]:
    """The records of an imagefolder (`path`: the folder, or its metadata file); images are located, not decoded.
    `columns` names the file-name and caption columns when they are not the usual ones."""
    columns = columns or Columns()
    root, metadata_files = find_metadata_files(Path(path))
    if not metadata_files:
        raise UserError(f"{path} has no metadata file ({', '.join(METADATA_FILES)}); accepted: {LAYOUTS}")
    report = LoadReport(source=str(path), layout=LAYOUT)
    card = card_patterns(root)
    rows = [row for metadata in metadata_files for row in _rows_of(metadata, root, columns, card, report)]
    merged = merge_rows(rows)
    if not merged:
        where = " that the dataset card's configs include" if card is not None else ""
        names = ", ".join(str(m.relative_to(root)) for m in metadata_files)
        raise UserError(f"the metadata files in {root} ({names}) list no images{where}")
    return rows_to_records(merged, lambda row: root / row.filename, report), report
