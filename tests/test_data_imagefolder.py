"""Tests for `data/imagefolder.py` through `data.load_dataset`: a folder of one's own photos in Hugging Face's layout.

Hand-written folders the way `datasets`' imagefolder reads them: `metadata.jsonl` (with `text`, a `captions` list, a
`qa` list, `question` / `answer`), `metadata.csv` (a list written as JSON), `metadata.parquet`, split folders with
their own metadata or one root file listing `train/x.jpg`, a dataset card's `configs:` overriding the folders, and
`--caption-column`. Every bad input is one line, and the folder is left exactly as it was. Images are 8x8 JPEGs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data import load_dataset
from errors import UserError


def tiny_jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (30, 120, 200)).save(path)


def write_jsonl(path: Path, rows: list[dict | str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def files_in(folder: Path) -> dict[str, int]:
    """Every file under `folder` with its size: what a load must leave unchanged."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def records_of(splits) -> dict[str, object]:
    return {r.path.name: r for r in splits.train + splits.val + splits.test}


def split_names(splits) -> dict[str, list[str]]:
    return {s: sorted(r.path.name for r in getattr(splits, s)) for s in ("train", "val", "test")}


def test_jsonl_without_splits_reads_captions_and_questions(tmp_path):
    root = tmp_path / "photos"
    for name in ("beach.jpg", "trip/dog.jpg", "cat.jpg", "qa_only.jpg"):
        tiny_jpeg(root / name)
    write_jsonl(
        root / "metadata.jsonl",
        [
            {"file_name": "beach.jpg", "text": "Waves on an empty beach.\n"},
            {"file_name": "beach.jpg", "text": "A quiet beach at dawn. "},  # a second row of one image adds up
            {
                "file_name": "trip/dog.jpg",
                "text": ["A dog.", "  ", 7],  # a list in `text`: the empty and the non-text caption are counted
                "qa": [{"question": "What animal is it? ", "answer": "a dog"}, {"question": "no answer"}],
            },
            {"file_name": "cat.jpg", "text": "A cat on a mat.", "question": "Where is the cat?", "answer": "on a mat"},
            {"file_name": "qa_only.jpg", "text": None, "question": "What colour?", "answer": "blue"},
            {"file_name": "gone.jpg", "text": "Listed, but the file is missing."},
            "{not json",
            {"text": "a row without a file name"},
        ],
    )
    before = files_in(root)
    splits, report = load_dataset(str(root), cache_dir=tmp_path / "cache", split="random", max_bad_fraction=0.5)
    assert report.layout == "imagefolder" and report.dataset == ""
    assert report.empty_captions_dropped == 3  # "  ", 7 and None
    assert report.malformed_rows_skipped == 3  # bad JSON, no file name, the qa entry without an answer
    assert report.skip_reasons == {"missing": 1}
    records = records_of(splits)
    assert sorted(records) == ["beach.jpg", "cat.jpg", "dog.jpg", "qa_only.jpg"]
    assert records["beach.jpg"].captions == ["Waves on an empty beach.", "A quiet beach at dawn."]
    assert records["dog.jpg"].path == root / "trip" / "dog.jpg" and records["dog.jpg"].image_id == "dog"
    assert records["dog.jpg"].captions == ["A dog."] and records["dog.jpg"].qa == [("What animal is it?", "a dog")]
    assert records["cat.jpg"].qa == [("Where is the cat?", "on a mat")]
    assert records["qa_only.jpg"].captions == [] and records["qa_only.jpg"].qa == [("What colour?", "blue")]
    assert all(r.split is None for r in records.values())
    with pytest.raises(UserError, match="karpathy.*none") as err:  # no split folders: no labels
        load_dataset(str(root), cache_dir=tmp_path / "cache", split="karpathy", max_bad_fraction=0.5)
    assert "\n" not in str(err.value)
    assert files_in(root) == before


@pytest.mark.parametrize("metadata_at", ["each split folder", "the root"])
def test_csv_with_split_folders(tmp_path, metadata_at):
    root = tmp_path / "photos"
    layout = {"train": ["a.jpg", "b.jpg", "c.jpg"], "validation": ["d.jpg"], "test": ["e.jpg", "f.jpg"]}
    rows: dict[str, list[list[str]]] = {}
    for folder, names in layout.items():
        for name in names:
            tiny_jpeg(root / folder / name)
            # `captions`, a list, is written as JSON in a CSV; a caption may itself start with "[".
            captions = json.dumps([f"Photo {name}. ", f"[{folder}] photo {name}"])
            where = name if metadata_at == "each split folder" else f"{folder}/{name}"
            rows.setdefault(folder if metadata_at == "each split folder" else ".", []).append([where, captions])
    for folder, folder_rows in rows.items():
        write_csv(root / folder / "metadata.csv", ["file_name", "captions"], folder_rows)
    write_csv(root / "train" / "extra" / "metadata.csv", ["file_name", "text"], [["../c.jpg", "[not a list"]])

    splits, report = load_dataset(str(root), cache_dir=tmp_path / "cache", split="karpathy")
    assert report.layout == "imagefolder"
    assert split_names(splits) == {"train": ["a.jpg", "b.jpg", "c.jpg"], "val": ["d.jpg"], "test": ["e.jpg", "f.jpg"]}
    records = records_of(splits)
    assert records["d.jpg"].captions == ["Photo d.jpg.", "[validation] photo d.jpg"] and records["d.jpg"].split == "val"
    assert records["c.jpg"].captions[-1] == "[not a list"  # from a nested metadata file: the image's path decides


def test_parquet_metadata_and_split_folder_names(tmp_path):
    root = tmp_path / "photos"
    names = {"data/training/a.jpg": "train", "data/dev-2/b.jpg": "val", "data/my_eval/c.jpg": "test"}
    for name in names:
        tiny_jpeg(root / name)
    table = pa.table({"image_file_name": [n.removeprefix("data/") for n in names], "caption": ["x", "y", "z"]})
    pq.write_table(table, root / "data" / "metadata.parquet")
    splits, _ = load_dataset(str(root), cache_dir=tmp_path / "cache", split="karpathy")
    assert {r.path.relative_to(root).as_posix(): r.split for r in records_of(splits).values()} == names


def test_dataset_card_configs_override_the_folders(tmp_path):
    root = tmp_path / "photos"
    for name in ("train/a.jpg", "train/b.jpg", "test/c.jpg", "holdout/d.jpg", "assets/logo.jpg"):
        tiny_jpeg(root / name)
    write_jsonl(
        root / "metadata.jsonl",
        [{"file_name": name, "text": f"photo {name}"} for name in ("train/a.jpg", "train/b.jpg", "test/c.jpg")]
        + [{"file_name": "holdout/d.jpg", "text": "held out"}, {"file_name": "assets/logo.jpg", "text": "a logo"}],
    )
    (root / "README.md").write_text(
        "---\n"
        "configs:\n"
        "- config_name: everything\n"
        "  data_files: '**'\n"
        "- config_name: default\n"
        "  default: true\n"
        "  data_files:\n"
        "  - split: train\n"
        "    path: [train/*, test/*]\n"  # the card puts the test folder into training ...
        "  - split: validation\n"
        "    path: holdout/**\n"  # ... and holdout/ into validation; assets/ is in no split: left out
        "---\n# My photos\n"
    )
    splits, report = load_dataset(str(root), cache_dir=tmp_path / "cache", split="karpathy")
    assert split_names(splits) == {"train": ["a.jpg", "b.jpg", "c.jpg"], "val": ["d.jpg"], "test": []}
    assert report.images_found == 4


def test_caption_column_names_another_column(tmp_path):
    root = tmp_path / "photos"
    tiny_jpeg(root / "a.jpg")
    write_jsonl(root / "metadata.jsonl", [{"file_name": "a.jpg", "text": "not this", "description": "A red square."}])
    splits, _ = load_dataset(str(root), cache_dir=tmp_path / "cache", caption_column="description")
    assert [r.captions for r in records_of(splits).values()] == [["A red square."]]


def bad_folder(root: Path, case: str) -> dict:
    """A folder with one kind of bad input; returns load_dataset's extra arguments."""
    tiny_jpeg(root / "train" / "a.jpg")
    if case == "no file_name":
        write_jsonl(root / "metadata.jsonl", [{"path": "train/a.jpg", "text": "A photo."}])
    elif case == "no text column":
        write_csv(root / "metadata.csv", ["file_name", "description"], [["train/a.jpg", "A photo."]])
    elif case == "unknown caption column":
        write_jsonl(root / "metadata.jsonl", [{"file_name": "train/a.jpg", "text": "A photo."}])
        return {"caption_column": "alt_text"}
    elif case == "conflicting splits":
        write_jsonl(root / "metadata.jsonl", [{"file_name": "train/a.jpg", "text": "A photo.", "split": "test"}])
    elif case == "two formats":
        write_jsonl(root / "train" / "metadata.jsonl", [{"file_name": "a.jpg", "text": "A photo."}])
        write_csv(root / "metadata.csv", ["file_name", "text"], [["train/a.jpg", "A photo."]])
    return {}


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no file_name", r"no file_name column \(its columns: path, text\).*--image-column"),
        (
            "no text column",
            r"no text column \(its columns: file_name, description\).*text, caption or captions.*"
            r"--caption-column",
        ),
        ("unknown caption column", r"no column 'alt_text' \(--caption-column\); its columns: file_name, text"),
        ("conflicting splits", r"conflicting split sources: train/a\.jpg is in the 'train' split.*says split 'test'"),
        ("two formats", r"metadata files of 2 formats"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, case, expected):
    root = tmp_path / "photos"
    extra = bad_folder(root, case)
    before = files_in(root)
    with pytest.raises(UserError, match=expected) as err:
        load_dataset(str(root), cache_dir=tmp_path / "cache", **extra)
    assert "\n" not in str(err.value)
    assert files_in(root) == before
