"""Synthetic captions and questions written by a teacher model (`python -m synth`), read back as a data source.

`synth/` asks a large vision-language model (the "teacher", Qwen2.5-VL-3B-Instruct) for a detailed caption and a
few short question-answer pairs per image, checks every answer, and writes what passed to a folder:

    OUT/
      README.md                      dataset card: YAML front matter (teacher, prompt, counts, date) + text
      data/shard-00000.jsonl         one JSON object per line, one line per image (appended, never rewritten)
      data/shard-00001.jsonl         ... a new shard per run, and every 1,000 images
      rejected.jsonl                 the images whose answer failed twice, with the reasons and the raw output

One line of a shard:

    {"image": "/abs/path/1000092795.jpg", "image_id": "1000092795", "source": "flickr30k",
     "caption": "Two young men in green shirts stand in a yard ...",
     "qa": [{"question": "how many men are there?", "answer": "two"}, ...],
     "teacher": "Qwen/Qwen2.5-VL-3B-Instruct", "prompt_version": 1, "failures": [], "dropped_qa": {}}

JSON lines are the simplest format a crash cannot corrupt beyond its last line: each record is written as one
line, so an interrupted run leaves at most one partial line at the end of one file, which the generator cuts
off on resume and this reader skips (and counts). The Hugging Face hub reads the same files directly
(`datasets.load_dataset("json", data_files="OUT/data/*.jsonl")`, or the repo id once uploaded).

`read_synthetic(path)` turns the shards into `ImageRecord`s with `captions=[caption]` and `qa=[(q, a), ...]`,
so `data.load_dataset("synthetic:OUT")` trains on them like on any other source, alone or merged with the
source of the images (`"flickr30k,synthetic:OUT"`: see `loading.py`). Image paths are stored absolute; a
relative path is read relative to OUT (for a dataset shipped with its images).

Read next: `synth/` (how these files are written by a teacher model), `data/loading.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

from errors import UserError

from .records import ImageRecord, LoadReport

DATA_DIR = "data"
SHARD_GLOB = "shard-*.jsonl"
REJECTED_FILE = "rejected.jsonl"
CARD_FILE = "README.md"
LAYOUT = "synthetic-jsonl"


def shard_paths(root: Path) -> list[Path]:
    """The shard files of a synthetic dataset folder, in order."""
    return sorted((Path(root) / DATA_DIR).glob(SHARD_GLOB))


def read_jsonl(path: Path, report: LoadReport | None = None) -> list[dict]:
    """The JSON objects of a JSON-lines file; a line that is not a JSON object is skipped (and counted)."""
    rows = []
    with Path(path).open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None  # typically the half-written last line of an interrupted run
            if isinstance(row, dict):
                rows.append(row)
            elif report is not None:
                report.skip_row(f"{path.name} line {line_no}: {line.strip()[:60]!r}")
    return rows


def _qa_pairs(items: object) -> list[tuple[str, str]] | None:
    """[{"question": q, "answer": a}, ...] -> [(q, a), ...], or None when the list is not of that shape."""
    if not isinstance(items, list):
        return None
    pairs = []
    for item in items:
        if not (
            isinstance(item, dict) and isinstance(item.get("question"), str) and isinstance(item.get("answer"), str)
        ):
            return None
        pairs.append((item["question"].strip(), item["answer"].strip()))
    return pairs


def read_synthetic(path: Path) -> tuple[list[ImageRecord], LoadReport]:
    """Read a folder written by `python -m synth` into one `ImageRecord` per image.

    Images are located but not decoded (`images.drop_bad_images` does that). Raises `UserError` when the folder
    is missing or holds no shards.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UserError(f"synthetic data folder {root} does not exist; write one with `python -m synth --out {root}`")
    shards = shard_paths(root)
    if not shards:
        raise UserError(
            f"{root} holds no {DATA_DIR}/{SHARD_GLOB} files; expected a folder written by `python -m synth`"
        )
    report = LoadReport(source=str(root), layout=LAYOUT)
    records: dict[Path, ImageRecord] = {}
    for shard in shards:
        for i, row in enumerate(read_jsonl(shard, report)):
            where = f"{shard.name} record {i}"
            image, caption, qa = row.get("image"), row.get("caption"), _qa_pairs(row.get("qa", []))
            if not isinstance(image, str) or not image or not isinstance(caption, str) or qa is None:
                report.skip_row(f"{where}: needs 'image', 'caption' and a 'qa' list of question/answer pairs")
                continue
            image_path = Path(image) if Path(image).is_absolute() else root / image
            captions = [caption.strip()] if caption.strip() else []
            report.empty_captions_dropped += 1 - len(captions)
            if image_path in records:  # the same image twice (two runs into one folder): keep everything
                records[image_path].captions.extend(captions)
                records[image_path].qa.extend(qa)
                continue
            image_id = row.get("image_id") if isinstance(row.get("image_id"), str) else image_path.stem
            records[image_path] = ImageRecord(image_id, image_path, captions, qa)
    report.images_found = len(records)
    kept = []
    for record in records.values():
        if record.captions or record.qa:
            kept.append(record)
        else:
            report.skip_image(record.path, "no captions")
    return kept, report
