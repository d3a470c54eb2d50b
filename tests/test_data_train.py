"""Every data layout trains: a demo-sized model takes a few steps on each real format and is evaluated.

The samples are the hand-written ones of the readers' own tests (COCO's Karpathy file over the 2014 and the 2017
folders, COCO's official captions files, an imagefolder with metadata.jsonl and with metadata.csv, a Parquet repo in
the hub cache); here each goes through `train.py --demo --data ...` for one epoch (a few steps), and its validation
metrics are written. COCO on Karpathy's split is then tested with `--test`, which prints our row under the published
ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_data_coco import karpathy_json, official_json, write_2014_images, write_2017_images
from test_data_imagefolder import tiny_jpeg, write_csv, write_jsonl
from test_data_parquet import hub, image, write_table  # noqa: F401 - `hub` is a fixture

import train

CAPTIONS = ["a red square on a white table", "a small red tile", "something red and square", "a red block"]


def coco_karpathy_2014(root: Path) -> str:
    write_2014_images(root)
    (root / "dataset_coco.json").write_text(json.dumps(karpathy_json()))
    return str(root)


def coco_karpathy_2017(root: Path) -> str:
    write_2017_images(root)
    (root / "annotations").mkdir()
    (root / "annotations" / "dataset_coco.json").write_text(json.dumps(karpathy_json()))
    return str(root)


def coco_official_2017(root: Path) -> str:
    write_2017_images(root)
    (root / "annotations").mkdir()
    for folder in ("train2017", "val2017"):
        (root / "annotations" / f"captions_{folder}.json").write_text(json.dumps(official_json(folder, "2017")))
    return str(root)


def imagefolder_jsonl(root: Path) -> str:
    rows = []
    for i in range(10):
        tiny_jpeg(root / f"photo{i}.jpg")
        rows.append(
            {"file_name": f"photo{i}.jpg", "text": CAPTIONS[i % 4], "question": "what colour?", "answer": "red"}
        )
    write_jsonl(root / "metadata.jsonl", rows)
    return str(root)


def imagefolder_csv(root: Path) -> str:
    for split, n in (("train", 6), ("validation", 2), ("test", 2)):
        rows = []
        for i in range(n):
            tiny_jpeg(root / split / f"{split}{i}.jpg")
            rows.append([f"{split}{i}.jpg", CAPTIONS[i % 4]])
        write_csv(root / split / "metadata.csv", ["file_name", "caption"], rows)
    return str(root)


LAYOUTS = {
    "coco-karpathy-2014": coco_karpathy_2014,
    "coco-karpathy-2017": coco_karpathy_2017,
    "coco-official-2017": coco_official_2017,
    "imagefolder-jsonl": imagefolder_jsonl,
    "imagefolder-csv": imagefolder_csv,
}


def demo_args(tmp_path: Path, data: str, *extra: str) -> list[str]:
    return ["--demo", "--data", data, "--output-dir", str(tmp_path / "models"), "--cache-dir", str(tmp_path / "cache"),
            "--wandb", "disabled", "--epochs", "1", "--run-name", "run", *extra]  # fmt: skip


def trained_and_validated(tmp_path: Path) -> dict:
    metrics = json.loads((tmp_path / "models" / "runs" / "run" / "metrics.json").read_text())
    assert (tmp_path / "models" / "runs" / "run" / "1_tiny_top2.safetensors").is_file()
    return metrics["epoch_1/val"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_local_layout_trains_and_validates(layout, tmp_path):
    data = LAYOUTS[layout](tmp_path / "data")
    assert train.main(demo_args(tmp_path, data)) == 0
    validation = trained_and_validated(tmp_path)
    assert {"bleu4", "cider_d", "rouge_l"} <= validation.keys() and validation["protocol"]["images"] >= 1


def test_a_parquet_repo_on_the_hub_trains_and_validates(hub, tmp_path):  # noqa: F811 - the fixture
    # As `push_to_hub` writes it: data/train-00000-of-00001.parquet, an Image feature struct, a caption list column.
    rows = {"image": [image(i, f"{i}.png") for i in range(10)], "captions": [[c, c.upper()] for c in CAPTIONS * 3][:10]}
    write_table(hub("someone/captions") / "data" / "train-00000-of-00001.parquet", rows)
    assert train.main(demo_args(tmp_path, "hf:someone/captions")) == 0
    assert trained_and_validated(tmp_path)["protocol"]["images"] >= 1


def test_coco_on_karpathys_split_tests_beside_the_published_rows(tmp_path, capsys):
    data = coco_karpathy_2017(tmp_path / "data")
    assert train.main(demo_args(tmp_path, data, "--split", "karpathy")) == 0
    test = ["--test", "--encoder", "tiny", "--top-k", "2", "--no-meteor", "--output-dir", str(tmp_path / "models"),
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    capsys.readouterr()
    assert train.main(test) == 0
    printed = "".join(capsys.readouterr())
    assert "ClipCap" in printed  # the published rows, then ours
    metrics = json.loads((tmp_path / "models" / "runs" / "run" / "metrics.json").read_text())
    published = metrics["test/1_tiny_top2/published"]
    assert published["dataset"] == "coco" and len(published["rows"]) >= 3
    assert {"bleu1", "bleu4", "rouge_l", "cider_d"} <= metrics["test/1_tiny_top2"].keys()
