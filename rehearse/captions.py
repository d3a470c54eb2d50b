"""The other data users bring: COCO with Karpathy's split over the 2017 folders, and a Parquet dataset repo on the hub.

    coco/
        annotations/dataset_coco.json   Karpathy's schema: {"dataset": "coco", "images": [{"filepath": "val2014",
                                        "filename": "COCO_val2014_000000391895.jpg", "cocoid": 391895, "split",
                                        "sentences": [{"raw", "tokens", ...}], ...}]}, restval included
        train2017/000000391895.jpg      COCO 2017's names: the cocoid, 12 digits; Karpathy's test images are in
        val2017/...                     both folders, so the reader finds them by cocoid

    hf/hub/datasets--someone--captions/snapshots/<commit>/
        data/train-00000-of-00001.parquet       as `datasets.Dataset.push_to_hub` writes them: an `image` column of
        data/validation-00000-of-00001.parquet  struct<bytes, path> declared an Image feature in the schema's
        data/test-00000-of-00001.parquet        "huggingface" metadata, and a `captions` list column

The images and captions are the Flickr30k folder's own (`rehearse/flickr.py`), written again in these two layouts, so
the rehearsal trains the real model on them as the README's `--data ~/data/coco --split karpathy` and
`--data hf:OWNER/NAME` do, then tests it: on Karpathy's COCO split, `--test` prints the published rows beside ours.

Read next: `data/coco.py` and `data/parquet.py` (the readers these exercise).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .flickr import FlickrLayout
from .hub_cache import snapshot_folder

PARQUET_REPO = "someone/captions"
COCO_FOLDERS = ("train2017", "val2017")
FIRST_COCOID = 391895


def write_coco(root: Path, flickr: FlickrLayout) -> Path:
    """A COCO folder of the Flickr30k folder's images: Karpathy's dataset_coco.json over the 2017 folders."""
    entries, labels = [], [s for s, n in flickr.splits.items() for _ in range(n)]
    for imgid, (path, split) in enumerate(zip(flickr.images, labels, strict=True)):
        cocoid = FIRST_COCOID + 1009 * imgid
        folder = COCO_FOLDERS[imgid % 2]  # test images in both folders, as in COCO 2017
        target = root / folder / f"{cocoid:012d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
        raws = flickr.captions[imgid * 5 : imgid * 5 + 5]
        label = "restval" if split == "train" and imgid % 2 else split
        sentences = [{"tokens": r.rstrip(".").lower().split(), "raw": r + " ", "imgid": imgid, "sentid": imgid * 5 + k}
                     for k, r in enumerate(raws)]  # fmt: skip
        entries.append({"filepath": "val2014" if folder == "val2017" else "train2014", "sentids": [s["sentid"] for
                        s in sentences], "filename": f"COCO_{folder[:-4]}2014_{cocoid:012d}.jpg", "imgid": imgid,
                        "split": label, "sentences": sentences, "cocoid": cocoid})  # fmt: skip
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "dataset_coco.json").write_text(json.dumps({"images": entries, "dataset": "coco"}))
    return root


def write_parquet_repo(hub_cache: Path, flickr: FlickrLayout) -> Path:
    """The Flickr30k folder's images as a Parquet dataset repo in the hub cache (its snapshot of `main`)."""
    snapshot = snapshot_folder(hub_cache, PARQUET_REPO, repo_type="dataset")
    features = {"image": {"_type": "Image"}, "captions": {"feature": {"dtype": "string", "_type": "Value"},
                                                          "_type": "Sequence"}}  # fmt: skip
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    start = 0
    for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
        count = flickr.splits[split]
        images = flickr.images[start : start + count]
        table = pa.table(
            {
                "image": [{"bytes": p.read_bytes(), "path": p.name} for p in images],
                "captions": [flickr.captions[i * 5 : i * 5 + 5] for i in range(start, start + count)],
            }
        ).replace_schema_metadata(metadata)
        (snapshot / "data").mkdir(parents=True, exist_ok=True)
        pq.write_table(table, snapshot / "data" / f"{name}-00000-of-00001.parquet")
        start += count
    return snapshot
