"""Parquet dataset repos: what `datasets` writes with `push_to_hub`, read from the hub or from a local copy.

Most captioning sets on the Hugging Face Hub are stored the way `datasets.Dataset.push_to_hub` leaves them
(https://huggingface.co/docs/datasets/upload_dataset): Parquet files, one table per split, and a dataset card.

    README.md                                   # YAML front matter: `configs:` (which files make which split)
    data/train-00000-of-00002.parquet           # the default subset: {split}-{shard:05d}-of-{shards:05d}.parquet
    data/train-00001-of-00002.parquet
    data/test-00000-of-00001.parquet
    other_subset/train-00000-of-00001.parquet   # `push_to_hub(..., config_name="other_subset")`

Which files make which split is read as `datasets` reads it (https://huggingface.co/docs/hub/datasets-data-files-
configuration): the card's `configs:` block first (`data/card.py`; `hf:OWNER/NAME:SUBSET` picks a subset, and with
several subsets and no default one line lists them); without one, the file names: `data/{split}-NNNNN-of-NNNNN.parquet`,
else a folder or file name holding a split keyword (train/training, validation/valid/val/dev, test/testing/eval/
evaluation), else everything is the train split. The repo's splits are kept as the records' `split` labels ("train",
"val", "test"); a Karpathy-style `split` column (COCO's "restval" included) overrides them row by row.

A table row is an image and what is said about it. The image column is found from the Arrow schema: `datasets` stores
its features as JSON under the schema metadata key b"huggingface" (`{"info": {"features": {"image": {"_type":
"Image"}, ...}}}`), and its `Image` feature is a struct of `bytes` (the encoded file) and `path` (the file's name, or
a path of the machine that wrote it when `bytes` is null). Without that metadata, a struct<bytes, path> column or a
binary column is the image. Caption columns go by the usual names: `captions` (a list), `caption`, `sentences`,
`text`, `raw`, ..., or numbered ones (`caption_0` ... `caption_4`); a list of Karpathy sentences ({"raw": ...}) is
read too. `--image-column` / `--caption-column` (`records.Columns`) name them when the names are unusual; several
caption columns are written comma-separated. Some sets have one row per caption (COCO's Karpathy split on the hub):
rows whose image bytes are equal are one image with all their captions.

How it is read, and why not with `datasets`. Only what training needs: `pyarrow.parquet.ParquetFile` reads the needed
columns only, row group by row group in order (https://arrow.apache.org/docs/python/parquet.html; a row group of
`push_to_hub` is at most about 100 MB, `datasets.config.MAX_ROW_GROUP_SIZE`, whatever the set's size), so a 100k-image
set never sits in memory. The rest of this project works on image *files* (the feature cache
keys by path, size and modification time; `images.py` decodes and verifies paths; caption samples show paths), so
each image's bytes are written once into our cache folder:

    cache_dir/hub/OWNER--NAME/<commit>/<subset>/<split>/<name>      (a local copy: cache_dir/parquet/FOLDER/<hash>/...)

`<name>` is the file name in the struct's `path` when it has one (and no other image took it), else
`{split}-{row:06d}` with the extension its bytes call for. A split's folder is filled under a file lock in a temporary
folder renamed into place at the end (`runtime.files.build_folder_once`): an interrupted extraction is redone, and a
second load writes nothing. Beside the images, `index.json` maps every table row to its file; the captions are read
from the Parquet files again at each load (their columns only, which is fast), so `--caption-column` may change
between runs. A struct without bytes whose `path` is a file of this machine is used where it is, not copied.
`datasets.load_dataset` would do the reading too, but it first converts the whole repo into its own Arrow cache
(another copy of every image, roughly doubling the disk used on top of the hub cache; its streaming mode avoids the
copy but hands out decoded images, not files). Here the hub cache's Parquet files are read directly, and `datasets` is
used by the tests only, to write repos exactly as it does.

From the hub, the repo's files are listed first (`HfApi.dataset_info`; offline or unreachable: the files of the cached
snapshot, which `snapshot_download(..., local_files_only=True)` finds from `refs/main`), which tells this layout from
the Flickr30k one (an annotation CSV and an image zip, `flickr30k.read_hub`). Only the card and the chosen subset's
Parquet files are downloaded, into the hub cache (`HF_HOME`, `HF_TOKEN`, `HF_HUB_OFFLINE=1` as usual). A local copy
(`hf download OWNER/NAME --repo-type dataset --local-dir DIR`) is read the same way from DIR.

Read next: `data/card.py` (the card's `configs:`), `data/images.py` (how each written image is then checked).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import RepositoryNotFoundError

from errors import UserError
from runtime.files import build_folder_once

from .card import CARD_FILE, Configs, card_configs
from .flickr30k import (
    HUB_ANNOTATIONS,
    HUB_IMAGES_ZIP,
    HubFilesUnavailable,
    Row,
    clean_captions,
    read_hub,
    rows_to_records,
)
from .records import Columns, ImageRecord, LoadReport

logger = logging.getLogger(__name__)

LAYOUT = "parquet"  # LoadReport.layout
INDEX_FILE = "index.json"  # in each extracted split folder: table row -> image file
BATCH_ROWS = 64  # rows converted to Python objects at a time (the row group itself is what pyarrow holds)
# Image columns' usual names, preferred when a table has several candidates.
IMAGE_COLUMNS = ("image", "img", "jpg", "png", "image_bytes")
# Caption columns' usual names, in order of preference: a list of all captions beats one of them.
CAPTION_COLUMNS = ("captions", "caption", "sentences", "text", "texts", "raw", "sentence")
_NUMBERED_CAPTION = re.compile(r"(?:caption|sentence|text)_?(\d+)", re.IGNORECASE)  # caption_0 ... caption_4
SPLIT_COLUMN = "split"  # Karpathy's per-image label ("train", "restval", "val", "test")
COCO_COLUMN = "cocoid"  # Karpathy's COCO file names each image's COCO id: the set is COCO
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")

# `datasets`' split keywords (datasets/data_files.py) and the labels they become here (data/splits.py).
SPLIT_KEYWORDS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "dev", "val"),
    "test": ("test", "testing", "eval", "evaluation"),
}
_LABELS = {"train": "train", "validation": "val", "test": "test"}
# What may stand between a split keyword and the rest of a name: datasets' NON_WORDS_CHARS "-._ 0-9" as a regex class.
_KEYWORD_SEPARATOR = "[-._ 0-9]"
_SHARDED = re.compile(r"data/(?P<split>\w+(?:\.\w+)*)-\d{5}-of-\d{5}[^/]*\.[^/]*")  # push_to_hub's file names


# ---------------------------------------------------------------------------------------------------------------------
# Source names


def split_hub_source(source: str) -> tuple[str, str | None]:
    """ "hf:OWNER/NAME:SUBSET" -> ("OWNER/NAME", "SUBSET"); without ":SUBSET" the subset is None ("" when the colon
    has nothing after it, which `loading.check_source` refuses)."""
    repo_id, colon, subset = source.removeprefix("hf:").partition(":")
    return repo_id, subset.strip() if colon else None


# ---------------------------------------------------------------------------------------------------------------------
# Which files make which split


def split_label(name: str) -> str:
    """A split's name as the repo or its `split` column says it -> our label: "validation" -> "val", "training" ->
    "train", "eval" -> "test", ...; other names stay as they are ("restval" is COCO's extra training images)."""
    name = name.strip().lower()
    for split, keywords in SPLIT_KEYWORDS.items():
        if name in keywords:
            return _LABELS[split]
    return name


def _is_hidden(path: str) -> bool:
    """`datasets` skips files in folders (or with names) starting with "." or "__" (.cache/, __pycache__/)."""
    return any(part.startswith((".", "__")) for part in PurePosixPath(path).parts)


def _is_parquet(path: str) -> bool:
    return path.endswith(".parquet") and not _is_hidden(path)


def _names_split(path: str, keyword: str, in_folder: bool) -> bool:
    """Whether a folder name of `path` (or its file name) holds `keyword` as a word: "train/", "my_train-2/", or
    "train-00001.parquet", "x.test.parquet" (datasets' KEYWORDS_IN_DIR_NAME / _FILENAME patterns)."""
    parts, sep = PurePosixPath(path).parts, _KEYWORD_SEPARATOR
    if in_folder:
        return any(re.fullmatch(rf"(?:.*{sep})?{keyword}(?:{sep}.*)?", part) for part in parts[:-1])
    return re.fullmatch(rf"(?:.*{sep})?{keyword}{sep}.*", parts[-1]) is not None


def infer_splits(files: list[str]) -> dict[str, list[str]]:
    """{split: files} from the file names alone, as `datasets` infers them for a repo without `configs:`."""
    sharded: dict[str, list[str]] = {}
    for path in files:
        if match := _SHARDED.fullmatch(path):
            sharded.setdefault(match["split"], []).append(path)
    if sharded:
        return sharded
    for in_folder in (True, False):  # split names in folder names first, then in file names
        found: dict[str, list[str]] = {}
        for path in files:
            for split, keywords in SPLIT_KEYWORDS.items():
                if any(_names_split(path, keyword, in_folder) for keyword in keywords):
                    found.setdefault(split, []).append(path)
                    break
        if found:
            return found
    return {"train": list(files)}


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A card's data-files glob as a regular expression over '/'-separated paths: `*` and `?` stay inside one folder,
    `**` crosses folders (as fsspec's glob, which `datasets` uses)."""
    out, i = [], 0
    pattern = pattern.removeprefix("./")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] in "*?":
            out.append("[^/]*" if pattern[i] == "*" else "[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) > 0:
            members = pattern[i + 1 : end].replace("\\", "\\\\")
            out.append(f"[^{members[1:]}]" if members.startswith("!") else f"[{members}]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def _ordered(splits: dict[str, list[str]]) -> dict[str, list[str]]:
    """Train, validation, test first (then the others by name); each split's files sorted, so shards come in order."""
    rank = {name: i for i, name in enumerate(("train", "training", "validation", "valid", "val", "dev", "test"))}
    names = sorted(splits, key=lambda name: (rank.get(name.lower(), len(rank)), name))
    return {name: sorted(splits[name]) for name in names}


def choose_subset(
    files: list[str], card_folder: Path | None, subset: str | None, source: str
) -> tuple[str, dict[str, list[str]]]:
    """(subset name, {split: Parquet files}) of a repo whose files are `files` ('/'-separated, relative to its root).

    `card_folder` holds the repo's README.md (None: it has none); `subset` is the user's `:SUBSET`, or None."""
    parquet = [path for path in files if _is_parquet(path)]
    configs = card_configs(card_folder) if card_folder is not None else Configs()
    if not configs.files:
        if subset not in (None, "default"):
            raise UserError(f"{source} has no subsets (its card has no 'configs:'); drop :{subset}")
        return "default", _ordered(infer_splits(parquet))
    if subset is None:
        try:
            subset = configs.default()
        except UserError:  # say it with this source's name, which the user types
            raise UserError(
                f"{source} has several subsets ({', '.join(configs.files)}) and none is the default; name one as "
                f"{source}:SUBSET, e.g. {source}:{next(iter(configs.files))}"
            ) from None
    if subset not in configs.files:
        raise UserError(f"{source} has no subset {subset!r}; its subsets: {', '.join(configs.files)}")
    splits: dict[str, list[str]] = {}
    for split, patterns in configs.files[subset].items():
        regexes = [_glob_regex(pattern) for pattern in patterns]
        matched = [path for path in files if any(r.fullmatch(path) for r in regexes) and not _is_hidden(path)]
        if not matched:
            raise UserError(
                f"{source}: the card's files for subset {subset!r}, split {split!r} ({', '.join(patterns)}) match no "
                "file of the repo"
            )
        if not all(path.endswith(".parquet") for path in matched):
            others = sorted({PurePosixPath(path).suffix or path for path in matched if not path.endswith(".parquet")})
            raise UserError(
                f"{source}: subset {subset!r}, split {split!r} is stored as {', '.join(others)} files; only Parquet "
                "repos are read (as `datasets` push_to_hub writes them)"
            )
        splits[split] = matched
    return subset, _ordered(splits)


# ---------------------------------------------------------------------------------------------------------------------
# Which columns


def _hf_features(schema: pa.Schema) -> dict:
    """The `datasets` features stored in the schema metadata (b"huggingface"), or {}."""
    try:
        features = json.loads((schema.metadata or {})[b"huggingface"])["info"]["features"]
    except (KeyError, TypeError, ValueError):
        return {}
    return features if isinstance(features, dict) else {}


def _is_image_struct(kind: pa.DataType) -> bool:
    """The Arrow type of `datasets`' Image feature: struct<bytes: binary, path: string>."""
    if not pa.types.is_struct(kind):
        return False
    fields = {kind.field(i).name: kind.field(i).type for i in range(kind.num_fields)}
    return "bytes" in fields and "path" in fields and _is_binary(fields["bytes"])


def _is_binary(kind: pa.DataType) -> bool:
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def _holds_text(kind: pa.DataType) -> bool:
    """A string, a list of them, or Karpathy's sentence ({"raw": string, ...}) or a list of those."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return True
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _holds_text(kind.value_type)
    if pa.types.is_struct(kind):
        raw = kind.get_field_index("raw")
        return raw >= 0 and _holds_text(kind.field(raw).type)
    return False


def _column_flags_hint(schema: pa.Schema) -> str:
    return f"its columns: {', '.join(schema.names)}; name them with --image-column and --caption-column"


def find_image_column(schema: pa.Schema, wanted: str | None, where: str) -> str:
    """The image column: `wanted` (the user's), else the one `datasets` declares an Image, else a struct<bytes, path>
    column, else a binary one (the usual names first)."""
    if wanted:
        if wanted not in schema.names:
            raise UserError(f"{where} has no column {wanted!r} (--image-column); {_column_flags_hint(schema)}")
        return wanted
    features = _hf_features(schema)
    declared = [n for n in schema.names if isinstance(features.get(n), dict) and features[n].get("_type") == "Image"]
    structs = [n for n in schema.names if _is_image_struct(schema.field(n).type)]
    binaries = [n for n in schema.names if _is_binary(schema.field(n).type)]
    for candidates in (declared, structs, binaries):
        if candidates:
            usual = [name for name in candidates if name.lower() in IMAGE_COLUMNS]
            return (usual or candidates)[0]
    raise UserError(f"{where} has no image column (images as bytes); {_column_flags_hint(schema)}")


def find_caption_columns(schema: pa.Schema, wanted: str | None, where: str) -> list[str]:
    """The caption columns: `wanted` (the user's, comma-separated), else the first usual name holding text, else the
    numbered ones (caption_0, caption_1, ...)."""
    if wanted:
        names = [name.strip() for name in wanted.split(",") if name.strip()]
        missing = [name for name in names if name not in schema.names]
        if missing:
            raise UserError(f"{where} has no column {missing[0]!r} (--caption-column); {_column_flags_hint(schema)}")
        return names
    texts = {name.lower(): name for name in schema.names if _holds_text(schema.field(name).type)}
    for usual in CAPTION_COLUMNS:
        if usual in texts:
            return [texts[usual]]
    numbered = sorted((int(m[1]), name) for name in texts.values() if (m := _NUMBERED_CAPTION.fullmatch(name)))
    if numbered:
        return [name for _, name in numbered]
    raise UserError(
        f"{where} has no caption column (usual names: {', '.join(CAPTION_COLUMNS)}); {_column_flags_hint(schema)}"
    )


def _caption_values(value: object) -> list:
    """A caption cell -> its captions, not yet checked: a list's items, and a Karpathy sentence's `raw` text."""
    items = value if isinstance(value, list) else [value]
    return [item.get("raw") if isinstance(item, dict) else item for item in items]


# ---------------------------------------------------------------------------------------------------------------------
# Reading a table


def _read_error(path: Path, err: BaseException) -> UserError:
    reason = (str(err).strip().splitlines() or [""])[0][:150]
    return UserError(
        f"cannot read {path} as Parquet ({type(err).__name__}: {reason}); an interrupted download? Delete it "
        "(from the Hugging Face cache, for a hub repo) and retry"
    )


def _schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        raise _read_error(path, err) from err


def _batches(path: Path, columns: list[str]) -> Iterator[dict[str, list]]:
    """The `columns` of `path` as {column: values}, `BATCH_ROWS` rows at a time, row group after row group in order.

    pyarrow decodes a whole row group's column chunk before it hands out its first batch (measured), so memory is
    bounded by the largest row group, not by the file or the set."""
    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns, use_threads=False)
        for batch in batches:
            yield batch.to_pydict()
    except (pa.ArrowException, OSError) as err:  # only reading happens in here: the caller's writes are not caught
        raise _read_error(path, err) from err


# ---------------------------------------------------------------------------------------------------------------------
# Writing the images once


def _sniff_suffix(data: bytes) -> str:
    """The file extension an image's first bytes call for (PIL reads by content; the name is for people)."""
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if data.startswith(b"\x89PNG"):
        return ".png"
    if data.startswith(b"GIF8"):
        return ".gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    if data.startswith(b"BM"):
        return ".bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ".tif"
    return ".img"


def _image_cell(cell: object) -> tuple[bytes | None, str | None]:
    """(bytes, path) of an image cell: `datasets`' struct, or plain bytes."""
    if isinstance(cell, (bytes, bytearray)):
        return bytes(cell) or None, None
    if isinstance(cell, dict):
        data, path = cell.get("bytes"), cell.get("path")
        return (bytes(data) if data else None), (path if isinstance(path, str) and path.strip() else None)
    return None, None


class _ImageWriter:
    """Writes one split's images into `folder`, one file per distinct image, and remembers each table row's file."""

    def __init__(self, folder: Path, prefix: str) -> None:
        self.folder = folder
        self.prefix = prefix  # the split's name: row-numbered files of two splits never share a name
        self.rows: list[str | None] = []  # per table row: a file name in `folder`, an absolute path, or None
        self.names: dict[bytes, str] = {}  # digest of an image's bytes -> its file: a repeated image is written once
        self.taken: set[str] = set()  # lower-cased: two names differing only in case are one file on macOS/Windows

    def add(self, cell: object, table: Path) -> None:
        """Write the image of the next table row (unless the same bytes were written already)."""
        data, path = _image_cell(cell)
        if data is None:
            # No bytes: `datasets` then keeps the path of a file of the machine that wrote the table. It is used where
            # it is; when it is not on this machine, `images.drop_bad_images` reports it missing.
            local = Path(path).expanduser() if path else None
            if local is not None and not local.is_absolute():
                local = table.parent / local
            self.rows.append(str(local.absolute()) if local is not None else None)
            return
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if digest not in self.names:
            name = self._free_name(path, data)
            (self.folder / name).write_bytes(data)
            self.names[digest] = name
            self.taken.add(name.lower())
        self.rows.append(self.names[digest])

    def _free_name(self, path: str | None, data: bytes) -> str:
        """The file name in `path` when it has a usable one, else the row number; an image extension; not taken."""
        name = PurePosixPath(path.replace("\\", "/")).name if path else ""
        if not name or name.startswith("."):  # none, "..", or a hidden file's name
            name = f"{self.prefix}-{len(self.rows):06d}"
        stem, suffix = PurePosixPath(name).stem, PurePosixPath(name).suffix
        if suffix.lower() not in IMAGE_SUFFIXES:  # "0001" or "photo.data": keep all of it, add what the bytes are
            stem, suffix = name, _sniff_suffix(data)
        candidate, n = f"{stem}{suffix}", len(self.rows)
        while candidate.lower() in self.taken:  # another image of this split has that name: add the row number
            candidate, n = f"{stem}-{n}{suffix}", n + 1
        return candidate


def _write_images(tables: list[Path], image_column: str, prefix: str, folder: Path) -> None:
    """Write the images of `tables` (one split's files, in order) into `folder`, then its `index.json`."""
    writer = _ImageWriter(folder, prefix)
    for table in tables:
        for batch in _batches(table, [image_column]):
            for cell in batch[image_column]:
                writer.add(cell, table)
    index = {"image_column": image_column, "tables": [t.name for t in tables], "rows": writer.rows}
    (folder / INDEX_FILE).write_text(json.dumps(index))


def _read_index(folder: Path) -> list[str | None]:
    try:
        return json.loads((folder / INDEX_FILE).read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"cannot read {folder / INDEX_FILE} ({err}); delete {folder} and it is written again") from err


# ---------------------------------------------------------------------------------------------------------------------
# From tables to records


def _safe(name: str) -> str:
    """A subset's or split's name as a folder name."""
    return re.sub(r"[^\w.-]", "_", name).lstrip(".") or "_"


def read_parquet_splits(
    root: Path, splits: dict[str, list[str]], target: Path, columns: Columns, report: LoadReport
) -> list[ImageRecord]:
    """The records of `splits` ({split: Parquet files relative to `root`}), their images written under `target`."""
    rows: dict[str, Row] = {}  # image path -> its file name, captions and label; one per image of all the splits
    without_image = 0  # table rows with no image at all
    for split, names in splits.items():
        tables = [root / name for name in names]
        where = f"{report.source} (split {split!r}, {names[0]})"
        schema = _schema(tables[0])
        image_column = find_image_column(schema, columns.image, where)
        caption_columns = find_caption_columns(schema, columns.caption, where)
        if COCO_COLUMN in schema.names:
            report.dataset = "coco"
        # The user's image column gets its own folder: the images written from another column stay valid for it.
        folder = target / (_safe(split) if columns.image is None else f"{_safe(split)}--{_safe(image_column)}")
        if not folder.is_dir():
            logger.info("writing the images of %s into %s (once)", where, folder)
        fill = partial(_write_images, tables, image_column, _safe(split))
        needed = sum(table.stat().st_size for table in tables)  # about what the images take
        build_folder_once(folder, f"the images of {report.source}, split {split!r}", fill, needed)
        has_labels = SPLIT_COLUMN in schema.names and _holds_text(schema.field(SPLIT_COLUMN).type)
        without_image += _add_rows(
            tables, folder, caption_columns, SPLIT_COLUMN if has_labels else None, split, rows, report
        )
    records = rows_to_records(rows, lambda row: Path(row.filename), report)  # sets images_found to the images
    report.images_found += without_image
    return records


def _add_rows(
    tables: list[Path],
    folder: Path,
    caption_columns: list[str],
    label_column: str | None,
    split: str,
    rows: dict[str, Row],
    report: LoadReport,
) -> int:
    """Read the captions (and Karpathy labels) of one split's `tables` into `rows`, by image (`folder`'s index);
    return how many table rows had no image (each is reported)."""
    images = _read_index(folder)
    wanted = list(dict.fromkeys([*caption_columns, *([label_column] if label_column else [])]))
    n = without_image = 0  # n: the table row, counted across the split's files
    for table in tables:
        for batch in _batches(table, wanted):
            for i in range(len(batch[wanted[0]])):
                image, n = (images[n] if n < len(images) else None), n + 1
                if image is None:
                    report.skip_image(f"{table.name} row {n - 1}", "no image")
                    without_image += 1
                    continue
                path = folder / image  # an absolute path (a file of this machine) stays as it is
                label = batch[label_column][i] if label_column else None
                label = split_label(label if isinstance(label, str) and label.strip() else split)
                row = rows.setdefault(str(path), Row(str(path), [], split=label))
                for column in caption_columns:
                    row.captions.extend(clean_captions(_caption_values(batch[column][i]), report))
    if n != len(images):
        raise UserError(f"{folder} holds the images of other tables ({len(images):,} rows, not {n:,}); delete it")
    return without_image


def _files_under(folder: Path) -> list[str]:
    """The files under `folder`, '/'-separated and relative to it, hidden ones (.cache/ of `hf download`) left out."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if not _is_hidden(relative) and path.is_file():
            files.append(relative)
    return files


def looks_like_parquet_repo(folder: Path) -> bool:
    """Whether `folder` holds `.parquet` files (in it or up to three folders down, hidden folders skipped)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return False
    for parent, dirs, names in os.walk(folder):
        depth = len(Path(parent).relative_to(folder).parts)
        dirs[:] = [] if depth >= 3 else [d for d in dirs if not d.startswith((".", "__"))]
        if any(name.endswith(".parquet") and not name.startswith((".", "__")) for name in names):
            return True
    return False


def read_parquet_folder(
    folder: Path, subset: str | None, cache_dir: Path, columns: Columns
) -> tuple[list[ImageRecord], LoadReport]:
    """Read a local folder laid out as a Parquet dataset repo (e.g. downloaded with `hf download OWNER/NAME
    --repo-type dataset --local-dir DIR`); the images go to `cache_dir/parquet/FOLDER/<hash of the files>/`."""
    folder = Path(folder).expanduser()
    files = _files_under(folder)
    parquet = [path for path in files if _is_parquet(path)]
    if not parquet:
        raise UserError(f"{folder} holds no .parquet files")
    source = f"{folder}:{subset}" if subset else str(folder)
    card_folder = folder if (folder / CARD_FILE).is_file() else None
    name, splits = choose_subset(files, card_folder, subset, source)
    # The files' names and sizes stand for their contents: a changed copy gets new images, the same one reuses them.
    fingerprint = json.dumps([(path, (folder / path).stat().st_size) for path in parquet])
    target = Path(cache_dir) / "parquet" / _safe(folder.name) / hashlib.sha1(fingerprint.encode()).hexdigest()[:16]
    report = LoadReport(source=source, layout=LAYOUT)
    return read_parquet_splits(folder, splits, target / _safe(name), columns, report), report


# ---------------------------------------------------------------------------------------------------------------------
# The hub


@dataclass(frozen=True)
class HubListing:
    """The files of a hub dataset repo at one commit, and whether the list came from the local hub cache."""

    revision: str  # the commit
    files: list[str]
    cached: bool  # the hub was not asked (HF_HUB_OFFLINE) or could not be reached: read from the cache only


def list_hub_repo(repo_id: str) -> HubListing | None:
    """The repo's files: from the hub, else from the cached snapshot of its main branch; None when neither has it."""
    if not hf_constants.HF_HUB_OFFLINE:
        try:
            info = HfApi().dataset_info(repo_id)
        except RepositoryNotFoundError as err:  # also a private or gated repo without a token that can read it
            raise UserError(
                f"the Hugging Face Hub has no dataset repo {repo_id}, or it is private or gated and no token that may "
                "read it is set (HF_TOKEN)"
            ) from err
        except Exception:  # unreachable, or the hub is down: try the cache
            pass
        else:
            return HubListing(str(info.sha), [s.rfilename for s in info.siblings or []], cached=False)
    try:  # the snapshot `refs/main` points at, without any connection
        snapshot = Path(
            snapshot_download(repo_id, repo_type="dataset", allow_patterns=[CARD_FILE], local_files_only=True)
        )
    except Exception:  # not in the cache
        return None
    return HubListing(snapshot.name, _files_under(snapshot), cached=True) if snapshot.is_dir() else None


def _hub_instead(repo_id: str) -> str:
    return (
        f"without network, run `hf download {repo_id} --repo-type dataset --local-dir DIR` on a machine with "
        "network and pass --data DIR"
    )


def _fetch(repo_id: str, listing: HubListing, paths: list[str]) -> Path:
    """Download `paths` of the repo at the listing's commit into the hub cache (from the cache only when the listing
    came from there); return the snapshot folder holding them."""
    try:
        snapshot = Path(
            snapshot_download(
                repo_id,
                repo_type="dataset",
                revision=listing.revision,
                allow_patterns=[re.sub(r"([*?\[])", r"[\1]", path) for path in paths],  # the names, not patterns
                local_files_only=listing.cached,
            )
        )
    except Exception as err:  # unreachable half-way, disk full, ...
        reason = (str(err).strip().splitlines() or [""])[0][:150]
        raise UserError(
            f"could not download {len(paths)} files of hf:{repo_id} ({type(err).__name__}: {reason}); "
            f"{_hub_instead(repo_id)}"
        ) from err
    missing = [path for path in paths if not (snapshot / path).is_file()]
    if missing:
        offline = "HF_HUB_OFFLINE is set and " if hf_constants.HF_HUB_OFFLINE else ""
        raise UserError(
            f"{offline}{len(missing)} of the {len(paths)} files needed from hf:{repo_id} are not in the hub cache "
            f"(e.g. {missing[0]}); {_hub_instead(repo_id)}"
        )
    return snapshot


def read_hub_dataset(
    repo_id: str, subset: str | None, cache_dir: Path, columns: Columns
) -> tuple[list[ImageRecord], LoadReport]:
    """Read the hub dataset repo `repo_id` (`hf:OWNER/NAME[:SUBSET]`): Parquet, or the Flickr30k layout of
    `nlphuji/flickr30k` (`flickr30k.read_hub`), told apart by the repo's files."""
    source = f"hf:{repo_id}:{subset}" if subset else f"hf:{repo_id}"
    listing = list_hub_repo(repo_id)
    if listing is None:
        if subset is None:
            try:  # the Flickr30k layout's two files, asked for by name (what `hf:` did before Parquet repos)
                return read_hub(repo_id, cache_dir, local_files_only=True)
            except HubFilesUnavailable:
                pass
        offline = "HF_HUB_OFFLINE is set and " if hf_constants.HF_HUB_OFFLINE else "the hub could not be reached and "
        raise UserError(
            f"could not list the files of {source}: {offline}it is not in the hub cache; {_hub_instead(repo_id)}"
        )
    if HUB_ANNOTATIONS in listing.files and HUB_IMAGES_ZIP in listing.files:
        if subset:
            raise UserError(
                f"hf:{repo_id} is in the Flickr30k layout ({HUB_ANNOTATIONS} + {HUB_IMAGES_ZIP}), which has no "
                f"subsets; drop :{subset}"
            )
        return read_hub(repo_id, cache_dir, local_files_only=listing.cached)
    if not any(_is_parquet(path) for path in listing.files):
        raise UserError(
            f"{source} holds neither Parquet files (as `datasets` push_to_hub writes them) nor {HUB_ANNOTATIONS} + "
            f"{HUB_IMAGES_ZIP}; its files: {', '.join(listing.files[:8]) or 'none'}"
        )
    card_folder = _fetch(repo_id, listing, [CARD_FILE]) if CARD_FILE in listing.files else None
    name, splits = choose_subset(listing.files, card_folder, subset, source)
    root = _fetch(repo_id, listing, [path for paths in splits.values() for path in paths])
    report = LoadReport(source=source, layout=LAYOUT)
    target = Path(cache_dir) / "hub" / repo_id.replace("/", "--") / listing.revision / _safe(name)
    return read_parquet_splits(root, splits, target, columns, report), report
