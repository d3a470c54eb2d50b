"""Tests for `data/parquet.py`: Parquet dataset repos as `datasets` writes them, from the hub cache (offline) or a copy.

Every repo here is written by `datasets` itself (`Dataset.from_dict(...).cast_column("image", datasets.Image())` and
`.to_parquet`, under the file names `push_to_hub` uses, with its dataset card), so the tables carry the real Image
struct and the b"huggingface" schema metadata. The hub is a Hugging Face cache laid out as the hub's client lays it out
(`datasets--OWNER--NAME/refs/main` and `snapshots/<commit>/...`), read with HF_HUB_OFFLINE; nothing is downloaded (the
one test of a reachable hub fakes its file list and its download). Images are 8x8 PNGs whose pixel value says which
row they came from.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import constants as hf_constants
from PIL import Image

import data.parquet as parquet
from data import load_dataset, looks_like_parquet_repo, read_parquet_folder
from data.loading import check_source
from data.parquet import find_image_column, infer_splits, split_label
from data.records import Columns
from errors import UserError

SHA = "89abcdef0123456789abcdef0123456789abcdef"  # the cached snapshot's commit (any 40 hex digits)
datasets.disable_progress_bars()


# ------------------------------------------------------------------------------------------------------------ helpers


def png(value: int) -> bytes:
    """An 8x8 grey PNG of one pixel value: lossless, so an image read back says which row it was."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def pixel(path: Path) -> int:
    return int(np.asarray(Image.open(path))[0, 0])


def image(value: int, path: str | None = None) -> dict:
    """A cell of `datasets`' Image feature: the encoded bytes and the file's name (None: an image made in memory)."""
    return {"bytes": png(value), "path": path}


def write_table(path: Path, columns: dict[str, list], *, image_column: str | None = "image", rows_per_group=None):
    """Write a table as `datasets` does (the Image feature cast on `image_column`), at `path`."""
    table = datasets.Dataset.from_dict(columns)
    if image_column:
        table = table.cast_column(image_column, datasets.Image())
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(str(path), batch_size=rows_per_group)


def card(configs: str, features: str = "  - name: image\n    dtype: image\n") -> str:
    """A dataset card as push_to_hub writes it: dataset_info (features) and the configs block."""
    return f"---\ndataset_info:\n  features:\n{features}configs:\n{configs}---\n# Dataset card\n"


DEFAULT_CONFIG = (
    "- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n"
    "  - split: test\n    path: data/test-*\n"
)
TWO_SUBSETS = (
    "- config_name: alpha\n  data_files:\n  - split: train\n    path: alpha/train-*\n"
    "- config_name: beta\n  data_files:\n  - split: train\n    path: beta/train-*\n"
    "  - split: validation\n    path: beta/validation-*\n"
)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A function making an offline hub cache repo: repo(OWNER/NAME) -> its snapshot folder, to fill."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)

    def repo(repo_id: str) -> Path:
        storage = cache / f"datasets--{repo_id.replace('/', '--')}"
        (storage / "refs").mkdir(parents=True)
        (storage / "refs" / "main").write_text(SHA)
        snapshot = storage / "snapshots" / SHA
        snapshot.mkdir(parents=True)
        return snapshot

    return repo


def captioned_repo(snapshot: Path) -> None:
    """The default subset: 4 train rows (one with only an empty caption), 2 test rows; a card with its configs."""
    write_table(
        snapshot / "data/train-00000-of-00001.parquet",
        {
            "image": [image(10, "a.jpg"), image(11, "b.png"), image(12), image(13, "d.png")],
            "captions": [["a dog", " runs "], ["a cat"], ["a bird", ""], [""]],
        },
    )
    write_table(
        snapshot / "data/test-00000-of-00001.parquet",
        {"image": [image(20, "e.png"), image(21, "f.png")], "captions": [["a fish"], ["a frog"]]},
    )
    features = "  - name: image\n    dtype: image\n  - name: captions\n    list: string\n"
    (snapshot / "README.md").write_text(card(DEFAULT_CONFIG, features))


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def stamps(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folder`: (inode, modification time in ns)."""
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in [folder, *folder.rglob("*")]}


# ------------------------------------------------------------------------------------------------------------ the hub


def test_a_datasets_repo_with_its_card_loads_with_its_own_splits(hub, tmp_path):
    captioned_repo(hub("someone/captions"))
    cache = tmp_path / "cache"
    splits, report = load_dataset("hf:someone/captions", cache_dir=cache, split="karpathy")
    assert (report.layout, report.source, report.dataset) == ("parquet", "hf:someone/captions", "")
    assert splits.sizes() == (3, 0, 2)  # d.png has no caption left: skipped
    folder = cache / "hub" / "someone--captions" / SHA / "default"
    by_name = {r.path.name: r for r in [*splits.train, *splits.test]}
    # Names from the struct's path; a row without one gets its split and row number, with its bytes' extension.
    assert sorted(by_name) == ["a.jpg", "b.png", "e.png", "f.png", "train-000002.png"]
    assert by_name["a.jpg"].path == folder / "train" / "a.jpg" and by_name["a.jpg"].image_id == "a"
    assert by_name["a.jpg"].captions == ["a dog", "runs"] and by_name["train-000002.png"].captions == ["a bird"]
    assert by_name["e.png"].path == folder / "test" / "e.png" and by_name["e.png"].split == "test"
    assert {pixel(r.path) for r in splits.train} == {10, 11, 12} and by_name["a.jpg"].split == "train"
    assert report.empty_captions_dropped == 2 and report.images_found == 6 and report.images_skipped == 1
    assert report.skip_reasons == {"no captions": 1}


def test_a_second_load_writes_nothing_and_an_interrupted_one_is_redone(hub, tmp_path):
    captioned_repo(hub("someone/captions"))
    cache = tmp_path / "cache"
    subset = cache / "hub" / "someone--captions" / SHA / "default"
    leftover = subset / "train.partial-killed"  # an extraction killed half-way last time
    leftover.mkdir(parents=True)
    (leftover / "a.jpg").write_bytes(b"half")
    load_dataset("hf:someone/captions", cache_dir=cache)
    assert not leftover.exists() and (subset / "train" / "a.jpg").read_bytes() == png(10)
    before = stamps(subset)
    splits, _ = load_dataset("hf:someone/captions", cache_dir=cache)
    assert stamps(subset) == before and sum(splits.sizes()) == 5


def test_several_subsets_need_one_named(hub, tmp_path):
    snapshot = hub("someone/multi")
    write_table(snapshot / "alpha/train-00000-of-00001.parquet", {"image": [image(1)], "caption": ["alpha one"]})
    write_table(snapshot / "beta/train-00000-of-00001.parquet", {"image": [image(2)], "caption": ["beta one"]})
    write_table(snapshot / "beta/validation-00000-of-00001.parquet", {"image": [image(3)], "caption": ["beta two"]})
    (snapshot / "README.md").write_text(card(TWO_SUBSETS))
    cache = tmp_path / "cache"
    with pytest.raises(UserError) as err:
        load_dataset("hf:someone/multi", cache_dir=cache)
    message = one_line(err)
    assert "several subsets (alpha, beta)" in message and "hf:someone/multi:SUBSET" in message
    with pytest.raises(UserError) as err:
        load_dataset("hf:someone/multi:gamma", cache_dir=cache)
    assert "its subsets: alpha, beta" in one_line(err)

    splits, report = load_dataset("hf:someone/multi:beta", cache_dir=cache, split="karpathy")
    assert splits.sizes() == (1, 1, 0) and report.source == "hf:someone/multi:beta"
    assert splits.train[0].captions == ["beta one"] and splits.val[0].captions == ["beta two"]
    assert [p.name for p in (cache / "hub" / "someone--multi" / SHA).iterdir() if p.is_dir()] == ["beta"]


def test_column_names_given_by_the_user(hub, tmp_path):
    snapshot = hub("someone/custom")
    columns = {
        "thumb": [png(90), png(91)],  # plain binary columns: the first would be taken as the image
        "picture": [png(1), png(2)],
        "descriptions": [["one", "uno"], ["two"]],
        "notes": ["first note", "second note"],
    }
    write_table(snapshot / "data/train-00000-of-00001.parquet", columns, image_column=None)
    cache = tmp_path / "cache"
    with pytest.raises(UserError) as err:
        load_dataset("hf:someone/custom", cache_dir=cache)
    message = one_line(err)
    assert "no caption column" in message and "thumb, picture, descriptions, notes" in message
    assert "--caption-column" in message

    splits, _ = load_dataset(
        "hf:someone/custom", cache_dir=cache, image_column="picture", caption_column="descriptions,notes"
    )
    records = sorted(splits.train + splits.val + splits.test, key=lambda r: r.image_id)
    assert [pixel(r.path) for r in records] == [1, 2]
    assert [r.captions for r in records] == [["one", "uno", "first note"], ["two", "second note"]]
    with pytest.raises(UserError) as err:
        load_dataset("hf:someone/custom", cache_dir=cache, image_column="photo", caption_column="notes")
    assert "no column 'photo' (--image-column)" in one_line(err)


def test_a_table_without_an_image_column_is_one_line_naming_its_columns(hub, tmp_path):
    snapshot = hub("someone/urls")
    table = {"url": ["http://x/1.jpg"], "caption": ["a dog"]}
    write_table(snapshot / "data/train-00000-of-00001.parquet", table, image_column=None)
    with pytest.raises(UserError) as err:
        load_dataset("hf:someone/urls", cache_dir=tmp_path / "cache")
    message = one_line(err)
    assert "no image column" in message and "its columns: url, caption" in message
    assert "--image-column" in message and "--caption-column" in message


def test_a_repo_neither_reachable_nor_cached_says_how_to_get_a_local_copy(hub, tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset("hf:someone/absent", cache_dir=tmp_path / "cache")
    message = one_line(err)
    assert "HF_HUB_OFFLINE is set" in message and "not in the hub cache" in message
    assert "hf download someone/absent --repo-type dataset --local-dir DIR" in message and "--data DIR" in message


def test_row_groups_are_read_in_order(hub, tmp_path):
    snapshot = hub("someone/groups")
    n = 7
    table = {"image": [image(i) for i in range(n)], "caption": [f"picture {i}" for i in range(n)]}
    write_table(snapshot / "data/train-00000-of-00001.parquet", table, rows_per_group=2)
    assert pq.ParquetFile(snapshot / "data/train-00000-of-00001.parquet").metadata.num_row_groups == 4
    splits, _ = load_dataset("hf:someone/groups", cache_dir=tmp_path / "cache", split="karpathy")
    assert [r.path.name for r in splits.train] == [f"train-{i:06d}.png" for i in range(n)]
    assert [(pixel(r.path), r.captions) for r in splits.train] == [(i, [f"picture {i}"]) for i in range(n)]


def test_one_row_per_caption_and_a_karpathy_split_column(hub, tmp_path):
    """COCO's Karpathy split on the hub: a row per caption (a Karpathy sentence struct), a `split` column, `cocoid`."""
    snapshot = hub("someone/coco-karpathy")
    table = {
        "image": [image(1, "COCO_1.jpg"), image(1, "COCO_1.jpg"), image(2, "COCO_2.jpg"), image(3), image(4)],
        "sentences": [{"raw": "one"}, {"raw": "one again"}, {"raw": "two"}, {"raw": "three"}, {"raw": "four"}],
        "split": ["train", "train", "restval", "val", "test"],
        "cocoid": [1, 1, 2, 3, 4],
    }
    write_table(snapshot / "data/train-00000-of-00001.parquet", table)
    cache = tmp_path / "cache"
    splits, report = load_dataset("hf:someone/coco-karpathy", cache_dir=cache, split="karpathy")
    assert splits.sizes() == (2, 1, 1) and report.dataset == "coco"
    first = next(r for r in splits.train if r.path.name == "COCO_1.jpg")
    assert first.captions == ["one", "one again"] and first.split == "train"
    assert {r.split for r in splits.train} == {"train", "restval"} and splits.val[0].captions == ["three"]
    written = sorted(p.name for p in (cache / "hub" / "someone--coco-karpathy" / SHA / "default" / "train").iterdir())
    assert written == ["COCO_1.jpg", "COCO_2.jpg", "index.json", "train-000003.png", "train-000004.png"]


# ----------------------------------------------------------------------------------------------------- a local copy


def test_a_local_copy_of_a_repo(tmp_path):
    folder = tmp_path / "downloaded"
    Image.fromarray(np.full((8, 8), 77, dtype=np.uint8)).save(tmp_path / "mine.png")
    # Split names in folder names (no card): train/ and validation/; a struct with only the path of a local file.
    table = {"image": [image(5, "x.png"), {"bytes": None, "path": str(tmp_path / "mine.png")}], "text": ["x", "y"]}
    write_table(folder / "train" / "0000.parquet", table)
    write_table(folder / "validation" / "0000.parquet", {"image": [image(6, "z.png")], "text": ["z"]})
    (folder / ".cache" / "huggingface").mkdir(parents=True)  # what `hf download --local-dir` leaves
    (folder / ".cache" / "huggingface" / "junk.parquet").write_bytes(b"not a table")
    hidden_only = tmp_path / "hidden-only" / ".cache"
    hidden_only.mkdir(parents=True)
    (hidden_only / "x.parquet").write_bytes(b"")
    assert looks_like_parquet_repo(folder) and not looks_like_parquet_repo(hidden_only.parent)
    assert not looks_like_parquet_repo(tmp_path / "nothing-here")

    cache = tmp_path / "cache"
    records, report = read_parquet_folder(folder, None, cache, Columns())
    assert report.layout == "parquet" and report.source == str(folder)
    paths = {r.captions[0]: r.path for r in records}
    assert paths["y"] == tmp_path / "mine.png"  # used where it is, not copied
    assert paths["x"].read_bytes() == png(5) and paths["x"].is_relative_to(cache / "parquet" / "downloaded")
    assert {r.captions[0]: r.split for r in records} == {"x": "train", "y": "train", "z": "val"}
    with pytest.raises(UserError) as err:
        read_parquet_folder(folder, "other", cache, Columns())
    assert "has no subsets" in one_line(err)
    # `--data DIR` finds the layout by itself, among the local ones.
    splits, report = load_dataset(str(folder), cache_dir=cache, split="random")
    assert report.layout == "parquet" and sorted(
        c for r in splits.train + splits.val + splits.test for c in r.captions
    ) == ["x", "y", "z"]


# ---------------------------------------------------------------------------------------- the Flickr30k layout, names


def test_a_flickr30k_layout_repo_in_the_cache_is_still_told_apart(hub, tmp_path):
    snapshot = hub("someone/flickr-like")
    with (snapshot / "flickr_annotations_30k.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["raw", "sentids", "split", "filename", "img_id"])
        writer.writerow([json.dumps(["a dog", "a brown dog"]), "[0, 1]", "train", "1000.jpg", "0"])
    with zipfile.ZipFile(snapshot / "flickr30k-images.zip", "w") as archive:
        archive.writestr("flickr30k-images/1000.jpg", png(3))
    splits, report = load_dataset("hf:someone/flickr-like", cache_dir=tmp_path / "cache", split="karpathy")
    assert report.layout == "annotations-csv" and splits.train[0].captions == ["a dog", "a brown dog"]


def test_split_names_as_datasets_infers_them():
    sharded = [f"data/train-0000{i}-of-00002.parquet" for i in range(2)] + ["data/restval-00000-of-00001.parquet"]
    assert infer_splits(sharded) == {"train": sharded[:2], "restval": sharded[2:]}
    by_folder = ["dev/a.parquet", "my_train/b.parquet", "other.parquet"]
    assert infer_splits(by_folder) == {"validation": ["dev/a.parquet"], "train": ["my_train/b.parquet"]}
    by_file = ["x/train.parquet", "x/eval-1.parquet", "x/contest.parquet", "x/test0.parquet"]
    assert infer_splits(by_file) == {"train": ["x/train.parquet"], "test": ["x/eval-1.parquet", "x/test0.parquet"]}
    assert infer_splits(["a.parquet", "b.parquet"]) == {"train": ["a.parquet", "b.parquet"]}
    labels = ["Validation", "valid", "dev", "training", "testing", "evaluation", "restval"]
    assert [split_label(name) for name in labels] == ["val", "val", "val", "train", "test", "test", "restval"]


def test_hub_source_names_with_a_subset():
    assert check_source("hf:someone/multi:beta,hf:someone/other") == ["hf:someone/multi:beta", "hf:someone/other"]
    with pytest.raises(UserError, match="hf:OWNER/REPO:SUBSET"):
        check_source("hf:someone/multi:")


def test_a_binary_image_column_without_metadata(tmp_path):
    """Parquet written by pyarrow alone (no `datasets` metadata): a binary `image` column and a `caption`."""
    folder = tmp_path / "plain"
    folder.mkdir()
    table = pa.table({"id": [1, 2], "image": [png(30), png(31)], "caption": ["thirty", None]})
    pq.write_table(table, folder / "train.parquet")
    records, report = read_parquet_folder(folder, None, tmp_path / "cache", Columns())
    assert [(pixel(r.path), r.captions) for r in records] == [(30, ["thirty"])]
    assert report.empty_captions_dropped == 1 and report.skip_reasons == {"no captions": 1}


def test_the_image_column_declared_by_datasets_wins(tmp_path):
    """The b"huggingface" metadata's Image feature beats a binary column before it; without metadata, an Image-like
    struct beats a binary column, and a binary column named as usual beats another."""
    write_table(
        tmp_path / "a.parquet", {"thumb": [png(1)], "photo": [image(2)], "caption": ["x"]}, image_column="photo"
    )
    assert find_image_column(pq.read_schema(tmp_path / "a.parquet"), None, "a") == "photo"
    plain = pa.table({"raw_bytes": [png(1)], "pic": [image(2)], "blob": [png(3)], "img": [png(4)]})
    assert find_image_column(plain.schema, None, "b") == "pic"
    assert find_image_column(plain.drop_columns(["pic"]).schema, None, "c") == "img"


def test_online_only_the_card_and_the_chosen_subset_are_downloaded(tmp_path, monkeypatch):
    """With the hub reachable (faked: its file list and the download), the other subset's tables are never fetched."""
    served = tmp_path / "served"
    write_table(served / "alpha/train-00000-of-00001.parquet", {"image": [image(1)], "caption": ["alpha one"]})
    write_table(served / "beta/train-00000-of-00001.parquet", {"image": [image(2)], "caption": ["beta one"]})
    write_table(served / "beta/validation-00000-of-00001.parquet", {"image": [image(3)], "caption": ["beta two"]})
    (served / "README.md").write_text(card(TWO_SUBSETS))
    files = [".gitattributes", *sorted(p.relative_to(served).as_posix() for p in served.rglob("*") if p.is_file())]
    requested = []

    def dataset_info(self, repo_id, **kwargs):
        return SimpleNamespace(sha=SHA, siblings=[SimpleNamespace(rfilename=name) for name in files])

    def snapshot_download(repo_id, **kwargs):
        requested.append((kwargs["revision"], kwargs["local_files_only"], sorted(kwargs["allow_patterns"])))
        return str(served)

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(parquet.HfApi, "dataset_info", dataset_info)
    monkeypatch.setattr(parquet, "snapshot_download", snapshot_download)
    splits, _ = load_dataset("hf:someone/multi:beta", cache_dir=tmp_path / "cache", split="karpathy")
    assert splits.sizes() == (1, 1, 0)
    assert requested == [
        (SHA, False, ["README.md"]),
        (SHA, False, ["beta/train-00000-of-00001.parquet", "beta/validation-00000-of-00001.parquet"]),
    ]
