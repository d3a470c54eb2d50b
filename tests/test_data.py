"""Tests for `data/`: every Flickr30k layout, broken images, the hub path (offline), splits, the shapes set, batches.

All fixtures are tiny files written into `tmp_path`; nothing is downloaded. The hub is faked by monkeypatching
`hf_hub_download`. The real Qwen3 tokenizer is used when `../shared/qwen3-tokenizer/tokenizer.json` exists.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
from PIL import Image
from tokenizers import Tokenizer

import data.flickr30k as flickr30k
from data import (
    CAPTION_PROMPT,
    IGNORE_INDEX,
    ImageRecord,
    LoadReport,
    Sample,
    VLMCollator,
    batch_order,
    drop_bad_images,
    encode_prompts,
    generate_shapes,
    load_dataset,
    load_image,
    make_samples,
    question_prompt,
    split_records,
)
from data.flickr30k import read_local
from data.images import image_problem
from demo.tokenizer import EOS_TOKEN, train_bpe_tokenizer
from errors import UserError

QWEN_TOKENIZER = Path(__file__).resolve().parents[2] / "shared/qwen3-tokenizer/tokenizer.json"

# ---------------------------------------------------------------------------------------------------------------------
# Fixture files: 5 good images and 3 bad ones, with captions (one of them empty)

GOOD = ["1000092795.jpg", "10002456.jpg", "1000268201.jpg", "2199200615.jpg", "1000344755.png"]
CORRUPT, TRUNCATED, MISSING = "1000366164.jpg", "1000523639.jpg", "1000919630.jpg"
ALL_FILES = GOOD + [CORRUPT, TRUNCATED, MISSING]
SPLITS = ["train", "train", "train", "val", "test", "train", "train", "train"]


def captions_of(filename: str) -> list[str]:
    stem = Path(filename).stem
    if filename == GOOD[1]:
        return [f"a dog {stem}", "   ", f"a cat {stem}"]  # the middle one is empty after stripping
    return [f"a photo {stem} number {k}" for k in range(3)]


def noise_image(size: int = 32, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def write_images(folder: Path) -> None:
    """The 5 good images, an unreadable file, a truncated JPEG; MISSING is left out on purpose."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(GOOD):
        noise_image(seed=i).save(folder / name)
    (folder / CORRUPT).write_bytes(b"<html>404 not found</html>")
    buffer = io.BytesIO()
    noise_image(size=64, seed=9).save(buffer, format="JPEG")  # cut after the header, inside the pixel data
    (folder / TRUNCATED).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 3 // 4])


def write_karpathy(root: Path, image_dir: str = "flickr30k_images") -> Path:
    write_images(root / image_dir)
    images = [
        {"filename": f, "split": s, "imgid": i, "sentences": [{"raw": c} for c in captions_of(f)]}
        for i, (f, s) in enumerate(zip(ALL_FILES, SPLITS, strict=True))
    ]
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": images, "dataset": "flickr30k"}))
    return root


def write_annotations_csv(root: Path, bad_row: bool = True) -> Path:
    write_images(root / "flickr30k-images")
    with (root / "flickr_annotations_30k.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["raw", "sentids", "split", "filename", "img_id"])
        for i, (name, split) in enumerate(zip(ALL_FILES, SPLITS, strict=True)):
            writer.writerow([json.dumps(captions_of(name)), json.dumps([3 * i, 3 * i + 1]), split, name, i])
        if bad_row:
            writer.writerow(["[not json", "[]", "train", "999.jpg", 99])
    return root


def write_results_csv(root: Path) -> Path:
    """Kaggle's nesting: root/flickr30k_images/results.csv and root/flickr30k_images/flickr30k_images/*.jpg."""
    folder = root / "flickr30k_images"
    write_images(folder / "flickr30k_images")
    lines = ["image_name| comment_number| comment"]
    for name in ALL_FILES:
        for k, caption in enumerate(captions_of(name)):
            if name == "2199200615.jpg" and k == 2:
                lines.append(f"{name}| {k}   A dog runs across the grass .")  # the merged row of the real file
            else:
                lines.append(f"{name}| {k}| {caption}")
    lines.append("garbage line without separators")
    (folder / "results.csv").write_text("\n".join(lines) + "\n")
    return root


def by_id(records: list[ImageRecord]) -> dict[str, ImageRecord]:
    return {r.image_id: r for r in records}


def check_bad_images_dropped(records: list[ImageRecord], report: LoadReport) -> list[ImageRecord]:
    """Every layout: 8 listed, 3 bad ones dropped for the right reasons, 1 empty caption dropped."""
    assert report.images_found == 8 and len(records) == 8
    kept = drop_bad_images(records, report, max_bad_fraction=0.5)
    assert sorted(r.path.name for r in kept) == sorted(GOOD)
    assert report.images_skipped == 3 and report.images_kept == 5
    assert dict(report.skip_reasons) == {"missing": 1, "unreadable": 1, "truncated": 1}
    assert report.empty_captions_dropped == 1
    assert by_id(kept)["10002456"].captions == ["a dog 10002456", "a cat 10002456"]
    summary = report.summary()
    assert "Skipped 3 images" in summary and "1 truncated" in summary and "Dropped 1 empty caption." in summary
    return kept


# ---------------------------------------------------------------------------------------------------------------------
# Safe image loading


def test_load_image_decodes_fully_and_rejects_broken_files(tmp_path):
    write_images(tmp_path)
    image = load_image(tmp_path / GOOD[4])
    assert image is not None and image.mode == "RGB" and image.size == (32, 32)
    assert image_problem(tmp_path / GOOD[0]) is None
    # A truncated JPEG opens lazily without error; only a full decode finds the problem.
    with Image.open(tmp_path / TRUNCATED) as lazy:
        assert lazy.size == (64, 64)
    assert load_image(tmp_path / TRUNCATED) is None and image_problem(tmp_path / TRUNCATED) == "truncated"
    assert load_image(tmp_path / CORRUPT) is None and image_problem(tmp_path / CORRUPT) == "unreadable"
    assert load_image(tmp_path / MISSING) is None and image_problem(tmp_path / MISSING) == "missing"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("limit", [1000, 600])  # 32*32 = 1024 px: above the limit (PIL warns), above 2x (PIL raises)
def test_decompression_bombs_are_bad_images(tmp_path, monkeypatch, limit):
    noise_image().save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    assert load_image(tmp_path / "bomb.png") is None
    assert image_problem(tmp_path / "bomb.png") == "decompression bomb"


def test_too_many_bad_images_is_a_user_error(tmp_path):
    records, report = read_local(write_karpathy(tmp_path))
    with pytest.raises(UserError, match=r"3 of 8 images \(37\.5%\).*more than the 1\.0% allowed") as err:
        drop_bad_images(records, report)  # default max_bad_fraction = 0.01
    assert str(tmp_path) in str(err.value)
    with pytest.raises(UserError, match="more than the 1.0% allowed"):
        load_dataset(str(tmp_path), cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------------------------------------------------------------
# The three local layouts


@pytest.mark.parametrize("image_dir", ["flickr30k_images", "images", "."])
def test_karpathy_json_layout(tmp_path, image_dir):
    records, report = read_local(write_karpathy(tmp_path, image_dir))
    assert report.layout == "karpathy-json"
    assert by_id(records)["1000092795"].captions == captions_of("1000092795.jpg")
    assert by_id(records)["1000092795"].path.samefile(tmp_path / image_dir / "1000092795.jpg")
    assert [r.split for r in records] == SPLITS
    check_bad_images_dropped(records, report)


def test_annotations_csv_layout(tmp_path):
    records, report = read_local(write_annotations_csv(tmp_path))
    assert report.layout == "annotations-csv"
    assert by_id(records)["1000268201"].captions == captions_of("1000268201.jpg")
    assert by_id(records)["1000268201"].split == "train"
    assert report.malformed_rows_skipped == 1 and "line 10" in report.malformed_examples[0]
    check_bad_images_dropped(records, report)


def test_results_csv_layout_repairs_the_merged_row(tmp_path):
    records, report = read_local(write_results_csv(tmp_path))  # pass the outer folder, as Kaggle unpacks it
    assert report.layout == "results-csv"
    merged = by_id(records)["2199200615"]
    # The file's captions are PTB-tokenised; they are read as natural text, like the other layouts' captions.
    assert merged.captions == captions_of("2199200615.jpg")[:2] + ["A dog runs across the grass."]
    assert merged.path.parent.name == "flickr30k_images" and merged.path.is_file()
    assert report.rows_repaired == 1 and "2199200615.jpg" in report.repaired_examples[0]
    assert report.malformed_rows_skipped == 1 and "garbage" in report.malformed_examples[0]
    assert all(r.split is None for r in records)
    check_bad_images_dropped(records, report)
    with pytest.raises(UserError, match="karpathy.*no"):
        load_dataset(str(tmp_path), cache_dir=tmp_path / "cache", split="karpathy", max_bad_fraction=0.5)


def test_load_dataset_from_a_local_folder_with_karpathy_labels(tmp_path):
    splits, report = load_dataset(
        str(write_karpathy(tmp_path)), cache_dir=tmp_path / "cache", split="karpathy", max_bad_fraction=0.5
    )
    # GOOD images are labelled train, train, train, val, test; the 3 bad ones were dropped before splitting.
    assert [r.image_id for r in splits.train] == ["1000092795", "10002456", "1000268201"]
    assert [r.image_id for r in splits.val] == ["2199200615"] and [r.image_id for r in splits.test] == ["1000344755"]
    assert report.images_kept == 5


def test_a_second_load_decodes_only_the_images_that_changed(tmp_path, monkeypatch):
    """The cache remembers which images decoded cleanly (path, size, modification time): an unchanged one is not
    decoded again, while a new, changed or missing one is, and the bad ones are still found."""
    import data.images

    decoded = []
    real = data.images.image_problem
    monkeypatch.setattr(data.images, "image_problem", lambda path: decoded.append(path.name) or real(path))
    folder, cache = write_karpathy(tmp_path / "data"), tmp_path / "cache"

    def load() -> tuple[list[str], LoadReport]:
        decoded.clear()
        splits, report = load_dataset(str(folder), cache_dir=cache, split="karpathy", max_bad_fraction=0.7)
        return sorted(decoded), report

    first, report = load()
    assert first == sorted(ALL_FILES) and report.images_kept == 5
    again, report = load()
    assert again == sorted([CORRUPT, TRUNCATED, MISSING]) and report.images_kept == 5  # bad ones: checked every time
    images = folder / "flickr30k_images"
    noise_image(seed=7).save(images / GOOD[0])  # replaced: a new size and modification time
    (images / GOOD[1]).write_bytes((images / GOOD[1]).read_bytes()[:100])  # cut short after it was verified
    (images / GOOD[2]).unlink()
    changed, report = load()
    assert changed == sorted([GOOD[0], GOOD[1], GOOD[2], CORRUPT, TRUNCATED, MISSING])
    assert report.images_kept == 3 and report.skip_reasons == {"unreadable": 1, "truncated": 2, "missing": 2}
    (cache / "verified-images.json").write_text("{not json")  # a damaged record only costs a full check
    everything, report = load()
    assert everything == sorted(ALL_FILES) and report.images_kept == 3


def test_unknown_layout_and_missing_path_are_user_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match=r"dataset_\*\.json.*raw.*results\.csv"):
        read_local(tmp_path)
    with pytest.raises(UserError, match="does not exist|no such"):
        load_dataset(str(tmp_path / "nope"), cache_dir=tmp_path / "cache")
    with pytest.raises(UserError, match="unknown split scheme"):
        load_dataset("shapes", cache_dir=tmp_path / "cache", split="by-caption")


def test_images_not_found_beside_the_annotations(tmp_path):
    write_karpathy(tmp_path)
    for f in (tmp_path / "flickr30k_images").iterdir():
        f.unlink()
    (tmp_path / "flickr30k-images.zip").write_bytes(b"")
    with pytest.raises(UserError, match="none of the images.*unzip"):
        read_local(tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# The hub, offline: hf_hub_download is replaced by a fake that serves files written here


def hub_files(tmp_path: Path) -> dict[str, Path]:
    source = write_annotations_csv(tmp_path / "source", bad_row=False)
    zip_path = tmp_path / "served" / "flickr30k-images.zip"
    zip_path.parent.mkdir()
    with zipfile.ZipFile(zip_path, "w") as archive:
        for f in sorted((source / "flickr30k-images").iterdir()):
            archive.write(f, f"flickr30k-images/{f.name}")
    return {"flickr_annotations_30k.csv": source / "flickr_annotations_30k.csv", "flickr30k-images.zip": zip_path}


def test_hub_download_extracts_once_and_parses(tmp_path, monkeypatch):
    served = hub_files(tmp_path)
    calls = []

    def fake_download(repo_id, filename, *, repo_type=None, **kwargs):
        calls.append((repo_id, filename, repo_type))
        return str(served[filename])

    monkeypatch.setattr(flickr30k, "hf_hub_download", fake_download)
    cache = tmp_path / "cache"
    target = cache / "hub" / "nlphuji--flickr30k" / "images"
    leftover = target.with_name("images.partial-interrupted")
    leftover.mkdir(parents=True)  # an extraction that was killed half-way last time
    (leftover / "half.jpg").write_bytes(b"")

    splits, report = load_dataset("flickr30k", cache_dir=cache, split="karpathy", max_bad_fraction=0.5)
    assert {c[1] for c in calls} == set(served) and {(c[0], c[2]) for c in calls} == {("nlphuji/flickr30k", "dataset")}
    assert splits.sizes() == (3, 1, 1) and report.source == "hf:nlphuji/flickr30k" and report.images_skipped == 3
    assert (target / "flickr30k-images" / GOOD[0]).is_file() and not leftover.exists()

    # Second run: already extracted, so even a now-broken zip is not opened again.
    served["flickr30k-images.zip"].write_bytes(b"not a zip")
    splits_again, _ = load_dataset("flickr30k", cache_dir=cache, split="karpathy", max_bad_fraction=0.5)
    assert splits_again.sizes() == (3, 1, 1)
    # A fresh cache with the broken zip: a clear error, and no half-extracted folder left behind.
    with pytest.raises(UserError, match="not a valid zip"):
        load_dataset("hf:someone/flickr-copy", cache_dir=tmp_path / "cache2", max_bad_fraction=0.5)
    # The zip is checked before anything is written: no folder, partial or whole.
    assert not list((tmp_path / "cache2").rglob("images*"))


@pytest.mark.parametrize(
    "error",
    [
        OfflineModeIsEnabled("Cannot reach https://huggingface.co: offline mode is enabled."),
        LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub."),
        ConnectionError("Name or service not known"),
    ],
)
def test_unreachable_hub_is_a_clear_user_error(tmp_path, monkeypatch, error):
    def failing_download(repo_id, filename, **kwargs):
        raise error

    monkeypatch.setattr(flickr30k, "hf_hub_download", failing_download)
    with pytest.raises(UserError) as err:
        load_dataset("flickr30k", cache_dir=tmp_path)
    message = str(err.value)
    for expected in ("nlphuji/flickr30k", "flickr_annotations_30k.csv", "flickr30k-images.zip", "--data"):
        assert expected in message
    assert "\n" not in message


def test_bad_hub_source_names(tmp_path):
    with pytest.raises(UserError, match="hf:OWNER/REPO"):
        load_dataset("hf:not a repo", cache_dir=tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# Splits


def fake_records(n: int, labels: list[str | None] | None = None) -> list[ImageRecord]:
    labels = labels or [None] * n
    return [ImageRecord(f"img{i:03d}", Path(f"img{i:03d}.jpg"), [f"caption {i}"], [], labels[i]) for i in range(n)]


@pytest.mark.parametrize("n", [7, 57, 200])
def test_random_split_is_by_image_disjoint_deterministic_80_10_10(n):
    records = fake_records(n)
    splits = split_records(records, "random", seed=3)
    ids = [[r.image_id for r in part] for part in (splits.train, splits.val, splits.test)]
    assert sorted(sum(ids, [])) == sorted(r.image_id for r in records)  # disjoint and complete
    for part, fraction in zip(ids, (0.8, 0.1, 0.1), strict=True):
        assert abs(len(part) - fraction * n) <= 1
    again = split_records(list(reversed(records)), "random", seed=3)  # input order does not matter
    assert [r.image_id for r in again.test] == ids[2] and [r.image_id for r in again.train] == ids[0]
    other = split_records(records, "random", seed=4)
    assert [r.image_id for r in other.train] != ids[0]


def test_karpathy_split_uses_the_layouts_labels():
    labels = ["train", "val", "test", "restval", "train", "test"]
    splits = split_records(fake_records(6, labels), "karpathy")
    assert [r.image_id for r in splits.train] == ["img000", "img003", "img004"]
    assert [r.image_id for r in splits.val] == ["img001"]
    assert [r.image_id for r in splits.test] == ["img002", "img005"]
    with pytest.raises(UserError, match="no"):
        split_records(fake_records(3), "karpathy")
    with pytest.raises(UserError, match="unknown split label"):
        split_records(fake_records(1, ["holdout"]), "karpathy")
    with pytest.raises(UserError, match="accepted: auto, random, karpathy"):
        split_records(fake_records(3), "by-caption")


def test_auto_split_takes_the_datas_labels_when_they_make_three_parts():
    labelled = fake_records(6, ["train", "val", "test", "restval", "train", "test"])
    auto, karpathy = split_records(labelled, "auto"), split_records(labelled, "karpathy")
    assert auto.scheme == "karpathy" and auto == karpathy
    for labels in (
        ["train", "val", "test", "train", None],  # one image without a label
        ["train", "train", "test", "train", "test"],  # no validation images (a hub repo of train and test)
        ["train", "validation", "test", "train", "test"],  # a label of its own naming
    ):
        auto, random = (
            split_records(fake_records(5, labels), "auto", seed=3),
            split_records(fake_records(5), "random", 3),
        )
        assert auto.scheme == "random", labels
        assert [[r.image_id for r in part] for part in (auto.train, auto.val, auto.test)] == [
            [r.image_id for r in part] for part in (random.train, random.val, random.test)
        ]


# ---------------------------------------------------------------------------------------------------------------------
# The generated shapes set


def file_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.*")}


def test_shapes_are_deterministic_from_the_seed(tmp_path):
    a = file_hashes(generate_shapes(tmp_path / "a", n_images=12, seed=0))
    b = file_hashes(generate_shapes(tmp_path / "b", n_images=12, seed=0))
    c = file_hashes(generate_shapes(tmp_path / "c", n_images=12, seed=1))
    assert len(a) == 13 and a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


# Where each position word puts a shape's centre: (row third, column third), 0 = top / left.
POSITION_CELLS = {
    "top left": (0, 0), "in the top left corner": (0, 0), "at the top": (0, 1), "top right": (0, 2),
    "in the top right corner": (0, 2), "on the left": (1, 0), "in the middle": (1, 1), "on the right": (1, 2),
    "bottom left": (2, 0), "in the bottom left corner": (2, 0), "at the bottom": (2, 1), "bottom right": (2, 2),
    "in the bottom right corner": (2, 2),
}  # fmt: skip
NAME = r"an? (red|green|blue|yellow|purple|orange) (circle|square|triangle|star)"


def check_position(shape: dict, phrase: str, image_size: int) -> None:
    x, y = shape["centre"]
    assert (int(3 * y / image_size), int(3 * x / image_size)) == POSITION_CELLS[phrase], (shape, phrase)


def check_caption(caption: str, shapes: dict[tuple[str, str], dict], image_size: int) -> None:
    """Every shape a caption names is in the scene; counts, relations and positions hold in pixel terms."""
    named = [(c, k) for c, k in re.findall(NAME, caption)]
    assert named and all(n in shapes for n in named), caption
    if count := re.match(r"(one|two|three) shapes?:", caption):
        assert ["one", "two", "three"].index(count[1]) + 1 == len(shapes) and len(named) == len(shapes)
    if relation := re.fullmatch(NAME + r" (to the left of|to the right of|above|below) " + NAME, caption):
        a, b = shapes[relation[1], relation[2]], shapes[relation[4], relation[5]]
        ra, rb = a["size"] / 2, b["size"] / 2
        axis, sign = {"to the left of": (0, 1), "to the right of": (0, -1), "above": (1, 1), "below": (1, -1)}[
            relation[3]
        ]
        # The shapes' boxes do not even touch along that axis: a clear margin.
        assert sign * (b["centre"][axis] - a["centre"][axis]) > ra + rb, caption
    for colour, kind, phrase in re.findall(
        NAME + r" (in the \w+ \w+ corner|at the \w+|on the \w+|in the middle)", caption
    ):
        check_position(shapes[colour, kind], phrase, image_size)


def test_shapes_captions_and_answers_are_true_of_the_scene_and_pixels(tmp_path):
    folder = generate_shapes(tmp_path, n_images=40, seed=5, image_size=64)
    meta = json.loads((folder / "dataset_shapes.json").read_text())
    assert [e["split"] for e in meta["images"]].count("train") == 32
    assert [e["split"] for e in meta["images"]].count("val") == 4
    kinds_seen, counts_seen = set(), set()
    for entry in meta["images"]:
        scene = entry["scene"]["shapes"]
        shapes = {(s["colour"], s["kind"]): s for s in scene}
        assert 1 <= len(scene) <= 3
        assert len({s["kind"] for s in scene}) == len({s["colour"] for s in scene}) == len(scene)
        kinds_seen |= {s["kind"] for s in scene}
        counts_seen.add(len(scene))
        # The pixels: each shape's centre has exactly its colour, and boxes do not overlap.
        pixels = np.asarray(Image.open(folder / "images" / entry["filename"]).convert("RGB"))
        for s in scene:
            x, y = s["centre"]
            assert tuple(pixels[y, x]) == tuple(s["rgb"]), (entry["filename"], s)
        for i, a in enumerate(scene):
            for b in scene[i + 1 :]:
                gap = [abs(a["centre"][k] - b["centre"][k]) - (a["size"] + b["size"]) / 2 for k in (0, 1)]
                assert max(gap) > 0
        background = pixels[np.all(np.abs(pixels.astype(int) - np.array(entry["scene"]["background"])) <= 6, axis=-1)]
        assert len(background) > 0.4 * pixels.shape[0] * pixels.shape[1] and background.min() >= 200
        # The language.
        captions = [s["raw"] for s in entry["sentences"]]
        assert len(captions) == 5 and len(set(captions)) == 5
        assert any(len(re.findall(NAME, c)) == len(scene) for c in captions)  # some caption names every shape
        for caption in captions:
            check_caption(caption, shapes, meta["image_size"])
        by_kind = {s["kind"]: s for s in scene}
        by_colour = {s["colour"]: s for s in scene}
        for qa in entry["qa"]:
            question, answer = qa["question"], qa["answer"]
            assert 1 <= len(answer.split()) <= 3
            if question == "how many shapes are there?":
                assert answer == ["one", "two", "three"][len(scene) - 1]
            elif m := re.fullmatch(r"what colour is the (\w+)\?", question):
                assert by_kind[m[1]]["colour"] == answer
            elif m := re.fullmatch(r"what shape is (\w+)\?", question):
                assert by_colour[m[1]]["kind"] == answer
            elif m := re.fullmatch(r"where is the (\w+)\?", question):
                check_position(by_kind[m[1]], answer, meta["image_size"])
            elif m := re.fullmatch(r"is there an? (\w+)\?", question):
                assert answer == ("yes" if m[1] in by_kind else "no")
            else:
                raise AssertionError(f"unexpected question {question!r}")
        # Every shape gets its three questions; "is there" is asked once with "yes" and once with "no".
        questions = [qa["question"] for qa in entry["qa"]]
        assert len(questions) == len(set(questions)) == 1 + 3 * len(scene) + 2
        assert sorted(qa["answer"] for qa in entry["qa"] if qa["question"].startswith("is there")) == ["no", "yes"]
    assert kinds_seen == {"circle", "square", "triangle", "star"} and counts_seen == {1, 2, 3}


def test_load_dataset_shapes_generates_once_then_reuses(tmp_path):
    splits, report = load_dataset("shapes", cache_dir=tmp_path, shapes_images=20, seed=2)
    folder = tmp_path / "shapes-seed2-n20"
    assert splits.sizes() == (16, 2, 2) and report.images_kept == 20
    assert all(r.qa and len(r.captions) == 5 for r in splits.train)
    annotation = folder / "dataset_shapes.json"
    stamp = annotation.stat().st_mtime_ns
    load_dataset("shapes", cache_dir=tmp_path, shapes_images=20, seed=2)
    assert annotation.stat().st_mtime_ns == stamp  # complete: not regenerated
    (folder / "images" / "shape_00003.png").unlink()
    splits, report = load_dataset("shapes", cache_dir=tmp_path, shapes_images=20, seed=2)
    assert (folder / "images" / "shape_00003.png").is_file() and report.images_skipped == 0
    # A set written by an older generator (another format version) is made again, not reused.
    meta = json.loads(annotation.read_text())
    annotation.write_text(json.dumps({**meta, "version": meta["version"] - 1}))
    load_dataset("shapes", cache_dir=tmp_path, shapes_images=20, seed=2)
    assert json.loads(annotation.read_text())["version"] == meta["version"]


# ---------------------------------------------------------------------------------------------------------------------
# Samples, batches and tokenizers


@pytest.fixture(scope="module")
def shapes_texts(tmp_path_factory) -> list[str]:
    folder = generate_shapes(tmp_path_factory.mktemp("shapes"), n_images=60, seed=0)
    meta = json.loads((folder / "dataset_shapes.json").read_text())
    texts = []
    for entry in meta["images"]:
        texts += [f"{CAPTION_PROMPT} {s['raw']}" for s in entry["sentences"]]
        texts += [f"{question_prompt(qa['question'])} {qa['answer']}" for qa in entry["qa"]]
    return texts


@pytest.fixture(scope="module", params=["bpe", "qwen3"])
def tokenizer_ids(request, shapes_texts) -> tuple[Tokenizer, int, int]:
    """(tokenizer, eos_id, pad_id): a BPE trained here (always), and the real Qwen3 tokenizer when present."""
    if request.param == "bpe":
        tokenizer = train_bpe_tokenizer(shapes_texts, vocab_size=400)
    else:
        if not QWEN_TOKENIZER.is_file():
            pytest.skip(f"Qwen3 tokenizer not found at {QWEN_TOKENIZER}")
        tokenizer = Tokenizer.from_file(str(QWEN_TOKENIZER))
    eos = tokenizer.token_to_id(EOS_TOKEN)
    assert eos is not None
    return tokenizer, eos, eos  # Qwen3-Base pads with <|endoftext|> too


def test_bpe_tokenizer_round_trips_any_text_and_has_eos(shapes_texts):
    tokenizer = train_bpe_tokenizer(shapes_texts)  # vocab_size=512
    assert tokenizer.get_vocab_size() <= 512 and tokenizer.token_to_id(EOS_TOKEN) == 0
    for text in ["Caption: a red circle", "Question: où est le carré? Answer: ☃ 42"]:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        assert tokenizer.decode(ids) == text
    assert len(tokenizer.encode(" a red circle").ids) == 3  # frequent words became single tokens
    with pytest.raises(UserError, match="at least 257"):
        train_bpe_tokenizer(shapes_texts, vocab_size=100)


def test_make_samples_covers_every_caption_and_question():
    records = [
        ImageRecord("a", Path("a.png"), ["a red circle", "one shape"], [("how many shapes are there?", "one")]),
        ImageRecord("b", Path("b.png"), ["a blue star"], []),
    ]
    samples = make_samples(records)
    assert samples == [
        Sample(0, "Caption:", " a red circle", "caption"),
        Sample(0, "Caption:", " one shape", "caption"),
        Sample(0, "Question: how many shapes are there? Answer:", " one", "qa"),
        Sample(1, "Caption:", " a blue star", "caption"),
    ]
    assert [s.task for s in make_samples(records, tasks=("qa",))] == ["qa"]
    with pytest.raises(UserError, match="accepted: caption, qa"):
        make_samples(records, tasks=("vqa",))


def test_collator_labels_padding_and_round_trip(tokenizer_ids):
    tokenizer, eos, pad = tokenizer_ids
    samples = [
        Sample(0, CAPTION_PROMPT, " a red circle to the left of a blue square", "caption"),
        Sample(1, question_prompt("what colour is the star?"), " yellow", "qa"),
        Sample(2, CAPTION_PROMPT, " a green triangle", "caption"),
    ]
    batch = VLMCollator(tokenizer, eos_id=eos, pad_id=pad)(samples)
    B, T = batch["input_ids"].shape
    assert B == 3 and all(batch[k].shape == (B, T) for k in ("attention_mask", "labels"))
    assert batch["image_index"].tolist() == [0, 1, 2] and batch["input_ids"].dtype == torch.long
    prompt_ids = encode_prompts(tokenizer, [s.prompt for s in samples])
    for b, sample in enumerate(samples):
        target_ids = tokenizer.encode(sample.target, add_special_tokens=False).ids
        n_prompt, length = len(prompt_ids[b]), len(prompt_ids[b]) + len(target_ids) + 1
        row, labels, mask = batch["input_ids"][b], batch["labels"][b], batch["attention_mask"][b]
        assert row[:length].tolist() == prompt_ids[b] + target_ids + [eos]
        assert row[length:].tolist() == [pad] * (T - length) and mask.tolist() == [1] * length + [0] * (T - length)
        # -100 exactly on the prompt and the padding; the target tokens and the eos are learned.
        assert (labels == IGNORE_INDEX).tolist() == [True] * n_prompt + [False] * (length - n_prompt) + [True] * (
            T - length
        )
        assert labels[n_prompt:length].tolist() == target_ids + [eos]
        assert tokenizer.decode(row[: length - 1].tolist()) == sample.prompt + sample.target
    assert T == max(int(n) for n in batch["attention_mask"].sum(dim=1))  # padded to the longest row only


def test_collator_reuses_token_ids_without_changing_batches(tokenizer_ids):
    # The collator remembers each text's token ids; a batch must not depend on what it collated before.
    tokenizer, eos, pad = tokenizer_ids
    samples = [
        Sample(0, CAPTION_PROMPT, " a red circle", "caption"),
        Sample(1, question_prompt("what colour is the star?"), " yellow", "qa"),
        Sample(1, question_prompt("what colour is the star?"), " yellow", "qa"),  # a repeat within one batch
    ]
    used = VLMCollator(tokenizer, eos_id=eos, pad_id=pad, max_target_tokens=2)
    used([Sample(2, CAPTION_PROMPT, " a blue square on the left", "caption"), *samples[:2]])
    again, fresh = used(samples), VLMCollator(tokenizer, eos_id=eos, pad_id=pad, max_target_tokens=2)(samples)
    assert again.keys() == fresh.keys() and all(torch.equal(again[k], fresh[k]) for k in fresh)
    assert used(samples)["input_ids"].tolist() == again["input_ids"].tolist()  # truncation did not shorten the memo


def test_collator_cuts_long_targets_without_eos(tokenizer_ids):
    # A cut caption must not end in end-of-text: the model would learn to stop mid-sentence. One that fits keeps it.
    tokenizer, eos, pad = tokenizer_ids
    long = Sample(
        0, CAPTION_PROMPT, " a red circle and a blue square and a green star and a purple triangle", "caption"
    )
    short = Sample(1, CAPTION_PROMPT, " a red circle", "caption")
    collate = VLMCollator(tokenizer, eos_id=eos, pad_id=pad, max_target_tokens=4)
    batch = collate([long, short])
    learned = [row[row != IGNORE_INDEX].tolist() for row in batch["labels"]]
    assert learned[0] == tokenizer.encode(long.target, add_special_tokens=False).ids[:4]  # no eos
    assert learned[1] == tokenizer.encode(short.target, add_special_tokens=False).ids + [eos]
    assert len(learned[1]) <= 5 and collate.count_cut([long, short, long]) == 2


@pytest.mark.parametrize("bucket", [True, False])
def test_batch_order_covers_every_sample_once_and_is_deterministic(bucket):
    lengths = np.random.default_rng(0).integers(3, 60, size=1037).tolist()
    order = batch_order(lengths, batch_size=8, seed=1, epoch=0, bucket=bucket)
    flat = [i for batch in order for i in batch]
    assert sorted(flat) == list(range(1037)) and all(1 <= len(b) <= 8 for b in order)
    assert order == batch_order(lengths, batch_size=8, seed=1, epoch=0, bucket=bucket)
    assert order != batch_order(lengths, batch_size=8, seed=1, epoch=1, bucket=bucket)
    assert order != batch_order(lengths, batch_size=8, seed=2, epoch=0, bucket=bucket)
    full = batch_order(lengths, batch_size=8, seed=1, epoch=0, bucket=bucket, drop_last=True)
    assert all(len(b) == 8 for b in full) and len(full) == 1037 // 8


def test_bucketing_reduces_padding():
    lengths = np.random.default_rng(0).integers(3, 60, size=2000).tolist()

    def padded_tokens(order: list[list[int]]) -> int:
        return sum(len(b) * max(lengths[i] for i in b) for b in order)

    bucketed = padded_tokens(batch_order(lengths, batch_size=16, seed=0, epoch=0, bucket=True, bucket_width=4))
    plain = padded_tokens(batch_order(lengths, batch_size=16, seed=0, epoch=0, bucket=False))
    assert bucketed < 0.75 * plain


def test_bucketing_mixes_templates_of_similar_length():
    # Two question templates whose samples are 40 and 41 characters long. Sorting by exact length would give
    # batches of one template each; length bands keep both in (nearly) every batch.
    lengths = [40, 41] * 400
    order = batch_order(lengths, batch_size=32, seed=0, epoch=1)
    mixed = sum(len({lengths[i] for i in batch}) == 2 for batch in order)
    assert mixed >= 0.9 * len(order)


def test_a_cache_folder_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "cache").write_text("not a folder")
    with pytest.raises(UserError, match="the cache folder .--cache-dir. .* is a file; expected a folder") as err:
        load_dataset("shapes", cache_dir=tmp_path / "cache")
    assert "\n" not in str(err.value)
