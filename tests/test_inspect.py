"""`python -m data.inspect`: what the loader will read, in numbers and a contact sheet, before any training."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from data import generate_shapes
from data.inspect import main


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory):
    """A 20-image shapes set with its split labels, where one test image is a byte copy of a training image and one
    validation image is missing."""
    folder = tmp_path_factory.mktemp("inspect") / "shapes"
    generate_shapes(folder, n_images=20, seed=0)
    images = json.loads(next(folder.glob("dataset_*.json")).read_text())["images"]
    by_split = {split: [i["filename"] for i in images if i["split"] == split] for split in ("train", "val", "test")}
    shutil.copyfile(folder / "images" / by_split["train"][0], folder / "images" / by_split["test"][0])
    (folder / "images" / by_split["val"][0]).unlink()
    return folder, by_split


def inspect(capsys, *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_inspect_counts_splits_copies_and_bad_images_and_draws_a_sheet(shapes_folder, tmp_path, capsys):
    folder, by_split = shapes_folder
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    sheet = tmp_path / "sheet.png"
    status, out, err = inspect(capsys, "--data", str(folder), "--cache-dir", str(tmp_path / "cache"), "--sheet",
                               str(sheet), "--samples", "6", "--tokenizer", str(tmp_path / "no-tokenizer"))  # fmt: skip
    assert status == 0, err
    assert "karpathy-json" in out and "split: karpathy (the data's own labels)" in out  # --split auto chose it
    rows = {
        line.split()[0]: line.split()[1:4]
        for line in out.splitlines()
        if line.split()[:1] in (["train"], ["val"], ["test"])
    }
    assert rows["train"][0] == str(len(by_split["train"])) and rows["val"][0] == str(len(by_split["val"]) - 1)
    assert rows["train"][1] == str(5 * len(by_split["train"]))  # 5 captions an image
    assert "bad images: 1" in out and "1 missing" in out
    assert "images in more than one split: 1, e.g. " in out and by_split["test"][0] in out
    assert "caption length in words (not tokens: no tokenizer.json at" in out
    with Image.open(sheet) as image:
        assert image.size[0] == 4 * 256 and image.size[1] > 256  # 6 tiles: two rows of four
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before  # nothing written into the data


def test_inspect_measures_captions_in_qwen3_tokens(shapes_folder, qwen3_tokenizer_dir, tmp_path, capsys):
    folder, _ = shapes_folder
    status, out, err = inspect(capsys, "--data", str(folder), "--cache-dir", str(tmp_path), "--tokenizer",
                               str(qwen3_tokenizer_dir), "--max-target-tokens", "8", "--split", "random")  # fmt: skip
    assert status == 0, err
    assert "split: random" in out and "caption length in tokens" in out
    cut = next(line for line in out.splitlines() if line.startswith("longer than --max-target-tokens 8:"))
    assert 0 < int(cut.split(": ")[1].split()[0].replace(",", "")) < 100  # some of the 100 captions, not all


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/no/such/folder"], "no such file or folder"),
        (["--data", "shapes", "--samples", "0"], "--samples 0 is invalid; expected an integer >= 1"),
        (["--data", "shapes", "--split", "sideways"], "invalid choice"),
    ],
)
def test_inspect_mistakes_are_one_line(args, message, tmp_path, capsys):
    try:
        status = main([*args, "--cache-dir", str(tmp_path)])
    except SystemExit as exit_:  # argparse's own mistakes
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.count("\n") == 1
