"""Tests for `data/coco.py` through `data.load_dataset`: COCO's three local layouts, and the errors of a wrong folder.

Each fixture is a hand-written sample of the real files, quirks included: Karpathy's `dataset_coco.json` (with
`tokens` lists, `restval`, raw captions ending in a space, images with 6 and 7 sentences) beside `train2014/` and
`val2014/`, the same file over the 2017 folders (with test images in both), and COCO's own `captions_*.json` of 2014
and 2017 (captions ending in spaces and newlines). Images are 8x8 JPEGs written into `tmp_path`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from data import load_dataset, read_local
from errors import UserError

# (cocoid, Karpathy's folder, Karpathy's split, captions as the files have them)
IMAGES = [
    (
        391895,
        "val2014",
        "test",
        [
            "A man with a red helmet on a small moped on a dirt road. ",
            "Man riding a motor bike on a dirt road on the countryside.",
            "A man riding on the back of a motorcycle.",
            "A dirt path with a young person on a motor bike rests to the foreground of a verdant area. ",
            "A man in a red shirt and a red hat is on a motorcycle on a hill side.",
        ],
    ),
    (
        522418,
        "val2014",
        "restval",
        [
            "A woman wearing a net on her head cutting a cake. ",
            "A woman cutting a large white sheet cake.",
            "A woman wearing a hair net cutting a large sheet cake.",
            "there is a woman that is cutting a white cake",
            "A woman marking a cake with the back of a chef's knife. ",
            "A woman in a kitchen cuts a sheet cake.",
        ],
    ),
    (
        57870,
        "train2014",
        "train",
        [
            "A restaurant has modern wooden tables and chairs.",
            "A long restaurant table with rattan rounded back chairs.",
            "a long table with a plant on top of it surrounded with wooden chairs ",
            "A long table with a flower arrangement in the middle for meetings",
            "A table is adorned with wooden chairs with blue accents.",
        ],
    ),
    (
        384029,
        "train2014",
        "train",
        [
            "A man preparing desserts in a kitchen covered in frosting.",
            "A chef is preparing and decorating many small pastries.",
            "A baker prepares various types of baked goods.",
            "a close up of a person grabbing a pastry in a container",
            "Close up of a hand touching various pastries.",
            "A person reaching for a pastry on a tray. ",
            "Pastries on a tray in a bakery.",
        ],
    ),
    (
        184613,
        "val2014",
        "val",
        [
            "A child holding a flowered umbrella and petting a yak.",
            "A young man holding an umbrella next to a herd of cattle.",
            "a young boy barefoot holding an umbrella touching the horn of a cow",
            "A young boy with an umbrella who is touching the horn of a cow.",
            "A boy holding an umbrella while standing next to livestock.",
        ],
    ),
    (
        318219,
        "val2014",
        "test",
        [
            "A young man holding a camera in front of a computer. ",
            "A man is holding a camera up to the screen.",
            "A man taking a picture of a computer screen.",
            "A man holding a camera up to a computer monitor.",
            "A man takes a picture of a computer screen.",
        ],
    ),
]
# Where COCO 2017 put them: 318219 (a Karpathy test image from val2014) is in train2017/, 391895 in val2017/.
FOLDER_2017 = {391895: "val2017", 522418: "train2017", 57870: "train2017", 384029: "train2017"}
FOLDER_2017 |= {184613: "val2017", 318219: "train2017"}


def name_2014(cocoid: int, folder: str) -> str:
    return f"COCO_{folder}_{cocoid:012d}.jpg"


def tiny_jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)


def karpathy_json() -> dict:
    """dataset_coco.json in Karpathy's schema, `tokens` lists included."""
    images, sentid = [], 770337
    for imgid, (cocoid, folder, split, captions) in enumerate(IMAGES):
        sentences = []
        for raw in captions:
            tokens = raw.lower().replace(".", "").split()
            sentences.append({"tokens": tokens, "raw": raw, "imgid": imgid, "sentid": sentid})
            sentid += 1
        images.append(
            {
                "filepath": folder,
                "sentids": [s["sentid"] for s in sentences],
                "filename": name_2014(cocoid, folder),
                "imgid": imgid,
                "split": split,
                "sentences": sentences,
                "cocoid": cocoid,
            }
        )
    return {"images": images, "dataset": "coco"}


def official_json(folder: str, year: str) -> dict:
    """captions_{folder}.json in COCO's format, for the images of `folder` (train2014, val2017, ...)."""
    images, annotations = [], []
    for cocoid, folder_2014, _, captions in IMAGES:
        in_folder = FOLDER_2017[cocoid] if year == "2017" else folder_2014
        if in_folder != folder:
            continue
        file_name = name_2014(cocoid, folder) if year == "2014" else f"{cocoid:012d}.jpg"
        images.append(
            {
                "license": 3,
                "file_name": file_name,
                "coco_url": f"http://images.cocodataset.org/{folder}/{file_name}",
                "height": 8,
                "width": 8,
                "date_captured": "2013-11-14 11:18:45",
                "flickr_url": "http://farm4.staticflickr.com/x.jpg",
                "id": cocoid,
            }
        )
        for k, caption in enumerate(captions):
            # The real files end some captions in a newline, others in a space.
            caption = caption.rstrip() + "\n" if k == 1 else caption
            annotations.append({"image_id": cocoid, "id": 770337 + len(annotations), "caption": caption})
    return {
        "info": {"year": int(year)},
        "licenses": [{"id": 3, "name": "x"}],
        "images": images,
        "annotations": annotations,
    }


def write_2014_images(root: Path) -> None:
    for cocoid, folder, _, _ in IMAGES:
        tiny_jpeg(root / folder / name_2014(cocoid, folder))


def write_2017_images(root: Path, leave_out: int | None = None) -> None:
    for cocoid, folder in FOLDER_2017.items():
        if cocoid != leave_out:
            tiny_jpeg(root / folder / f"{cocoid:012d}.jpg")


def stripped(cocoid: int) -> list[str]:
    return [c.strip() for c in next(captions for i, _, _, captions in IMAGES if i == cocoid)]


def test_karpathy_json_beside_the_2014_folders(tmp_path):
    root = tmp_path / "coco"
    write_2014_images(root)
    (root / "dataset_coco.json").write_text(json.dumps(karpathy_json()))
    # caption_datasets.zip unpacked whole, and the official annotations too: Karpathy's COCO file is still the one read.
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": [], "dataset": "flickr30k"}))
    (root / "dataset_flickr8k.json").write_text(json.dumps({"images": [], "dataset": "flickr8k"}))
    (root / "annotations").mkdir()
    (root / "annotations" / "captions_val2014.json").write_text(json.dumps(official_json("val2014", "2014")))

    splits, report = load_dataset(str(root), cache_dir=tmp_path / "cache", split="karpathy")
    assert (report.layout, report.dataset) == ("coco-karpathy-json", "coco")
    assert report.images_kept == 6 and report.empty_captions_dropped == 0
    ids = {split: sorted(r.image_id for r in getattr(splits, split)) for split in ("train", "val", "test")}
    assert ids == {  # restval joins train
        "train": ["COCO_train2014_000000057870", "COCO_train2014_000000384029", "COCO_val2014_000000522418"],
        "val": ["COCO_val2014_000000184613"],
        "test": ["COCO_val2014_000000318219", "COCO_val2014_000000391895"],
    }
    records = {r.image_id: r for r in splits.train + splits.val + splits.test}
    moped = records["COCO_val2014_000000391895"]
    assert moped.path == root / "val2014" / "COCO_val2014_000000391895.jpg"
    assert moped.captions[0] == "A man with a red helmet on a small moped on a dirt road."  # trailing space gone
    assert records["COCO_train2014_000000384029"].captions == stripped(384029)  # all 7
    assert records["COCO_val2014_000000522418"].captions == stripped(522418)  # all 6


def test_karpathy_json_over_the_2017_folders(tmp_path):
    root = tmp_path / "coco2017"
    write_2017_images(root, leave_out=57870)  # one image of Karpathy's is in neither folder
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "dataset_coco.json").write_text(json.dumps(karpathy_json()))

    splits, report = load_dataset(str(root), cache_dir=tmp_path / "cache", split="karpathy", max_bad_fraction=0.5)
    assert (report.layout, report.dataset) == ("coco-karpathy-json (2017 folders)", "coco")
    assert report.skip_reasons == {"missing": 1} and "train2017/000000057870.jpg" in report.skipped_examples[0]
    assert splits.sizes() == (2, 1, 2)
    # Karpathy's two test images, found by cocoid in the two different 2017 folders.
    assert {r.path.relative_to(root).as_posix() for r in splits.test} == {
        "val2017/000000391895.jpg",
        "train2017/000000318219.jpg",
    }
    records = {r.image_id: r for r in splits.train + splits.val + splits.test}
    assert records["000000384029"].captions == stripped(384029) and records["000000384029"].split == "train"


@pytest.mark.parametrize("year", ["2014", "2017"])
def test_official_captions_json(tmp_path, year):
    root = tmp_path / f"coco{year}"
    if year == "2014":
        write_2014_images(root)
    else:
        write_2017_images(root)
    (root / "annotations").mkdir()
    for folder in (f"train{year}", f"val{year}"):
        (root / "annotations" / f"captions_{folder}.json").write_text(json.dumps(official_json(folder, year)))

    splits, report = load_dataset(str(root), cache_dir=tmp_path / "cache", split="random")
    assert (report.layout, report.dataset) == ("coco-captions-json", "coco")
    records = {r.image_id: r for r in splits.train + splits.val + splits.test}
    assert len(records) == 6 and all(r.split is None for r in records.values())
    bakery = records[name_2014(384029, "train2014")[:-4] if year == "2014" else "000000384029"]
    assert bakery.captions == stripped(384029)  # 7 captions, joined by id; newlines and spaces stripped
    assert bakery.path.parent.name == f"train{year}"

    with pytest.raises(UserError) as err:
        load_dataset(str(root), cache_dir=tmp_path / "cache", split="karpathy")
    message = str(err.value)
    assert "\n" not in message
    assert "dataset_coco.json" in message and "caption_datasets.zip" in message
    assert "https://cs.stanford.edu/people/karpathy/deepimagesent/" in message


def test_coco_annotations_without_their_images_say_where_to_get_them(tmp_path):
    (tmp_path / "dataset_coco.json").write_text(json.dumps(karpathy_json()))
    with pytest.raises(UserError, match=r"train2014/ and val2014/.*cocodataset\.org") as err:
        read_local(tmp_path)
    assert "\n" not in str(err.value)


def test_a_folder_in_no_known_layout_says_what_was_looked_for_and_found(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "cat.jpg").write_bytes(b"")
    with pytest.raises(UserError) as err:
        load_dataset(str(tmp_path), cache_dir=tmp_path.parent / "cache")
    message = str(err.value)
    assert "\n" not in message
    for looked_for in (
        "dataset_coco.json",
        "captions_train2014.json",
        "dataset_*.json",
        "results.csv",
        "metadata.jsonl",
    ):
        assert looked_for in message
    assert message.endswith("found notes.txt, other.csv, pictures/")


@pytest.mark.parametrize(
    "annotation, dataset",
    [
        ("dataset_flickr30k.json", "flickr30k"),
        ("dataset_flickr8k.json", ""),  # Karpathy's Flickr8k: no published table of ours
        ("dataset_shapes.json", ""),  # the demo's generated set
        ("flickr_annotations_30k.csv", "flickr30k"),  # the hub's Flickr30k CSV
    ],
)
def test_the_report_names_the_dataset(tmp_path, annotation, dataset):
    tiny_jpeg(tmp_path / "images" / "1000092795.jpg")
    if annotation.endswith(".json"):
        name = annotation.removeprefix("dataset_").removesuffix(".json")
        image = {"filename": "1000092795.jpg", "split": "test", "sentences": [{"tokens": ["a"], "raw": "A dog. "}]}
        (tmp_path / annotation).write_text(json.dumps({"images": [image], "dataset": name}))
    else:
        (tmp_path / annotation).write_text('raw,filename,split\n"[""A dog. ""]",1000092795.jpg,test\n')
    records, report = read_local(tmp_path)
    assert report.dataset == dataset and records[0].captions == ["A dog."]
