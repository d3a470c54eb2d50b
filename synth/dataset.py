"""The synthetic dataset on disk: append-only shards, the rejected log, resuming, and the dataset card.

The layout and record format are described (and read back for training) in `data/synthetic.py`. Writing rules
that make a long generation run safe to interrupt and rerun:

- Records are only ever appended, one complete JSON line per `write` call, flushed after every batch. A crash
  (or Ctrl-C, or a pre-empted cloud GPU) loses at most the batch in flight and leaves at most one partial line,
  which `repair_partial_line` cuts off before the next run appends.
- Each run writes new shard files (`data/shard-00003.jsonl`, ...) and never rewrites old ones, so an upload of a
  grown dataset only sends the new files.
- A rerun skips every image already in a shard or in `rejected.jsonl` (`done_images`): it carries on where the
  last run stopped. Mixing teachers or prompt versions in one folder is refused (`check_compatible`).
- The dataset card (`README.md`) is computed from the files alone (`write_card`), after every run, so its counts
  always match the data, however many runs (and interruptions) produced it.

Dataset cards are the hub's README.md with YAML metadata ("front matter") between `---` lines:
https://huggingface.co/docs/hub/datasets-cards. We write it with huggingface_hub's `DatasetCard`.

Read next: `data/synthetic.py` (the same files read back for training), `synth/hub.py` (uploading them).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData

from data.synthetic import CARD_FILE, DATA_DIR, REJECTED_FILE, SHARD_GLOB, read_jsonl, shard_paths
from errors import UserError

from .prompt import MAX_ANSWER_WORDS, PROMPT_TEMPLATE, QUESTIONS_WANTED

SHARD_SIZE = 1000  # records per shard file
BAD_IMAGE = "bad image"  # the failure of an image that could not be decoded (never sent to the teacher)


def repair_partial_line(path: Path) -> None:
    """Cut a half-written last line (no final newline) off `path`, left by an interrupted run."""
    if not path.is_file():
        return
    content = path.read_bytes()
    if content and not content.endswith(b"\n"):
        path.write_bytes(content[: content.rfind(b"\n") + 1])


def read_all(root: Path) -> tuple[list[dict], list[dict]]:
    """(accepted records from every shard, rejected records) of the dataset folder `root`."""
    accepted = [row for shard in shard_paths(root) for row in read_jsonl(shard)]
    rejected_path = Path(root) / REJECTED_FILE
    rejected = read_jsonl(rejected_path) if rejected_path.is_file() else []
    return accepted, rejected


def done_images(root: Path) -> set[str]:
    """The images (their "image" path strings) a previous run already answered or rejected."""
    accepted, rejected = read_all(root)
    return {row.get("image") for row in accepted + rejected}


def check_compatible(root: Path, teacher: str, prompt_version: int) -> None:
    """Refuse to add data from another teacher or prompt version to a folder (the card describes one of each)."""
    accepted, rejected = read_all(root)
    for row in accepted + rejected:
        if (row.get("teacher"), row.get("prompt_version")) != (teacher, prompt_version):
            raise UserError(
                f"{root} holds data from teacher {row.get('teacher')!r} with prompt version "
                f"{row.get('prompt_version')}, not {teacher!r} with version {prompt_version}; use another --out"
            )


class ShardWriter:
    """Appends JSON lines to new `data/shard-NNNNN.jsonl` files (one more every `shard_size` records)."""

    def __init__(self, root: Path, shard_size: int = SHARD_SIZE) -> None:
        self.dir = Path(root) / DATA_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        existing = shard_paths(root)
        self.next_index = int(existing[-1].stem.split("-")[-1]) + 1 if existing else 0
        self.shard_size = shard_size
        self.file = None
        self.count = 0  # records in the open shard

    def write(self, record: dict) -> None:
        if self.file is None or self.count == self.shard_size:
            self.close()
            name = SHARD_GLOB.replace("*", f"{self.next_index:05d}")
            self.file = (self.dir / name).open("a", encoding="utf-8")
            self.next_index, self.count = self.next_index + 1, 0
        self.file.write(json.dumps(record, ensure_ascii=False) + "\n")  # one call per line: no interleaving
        self.count += 1

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def card_counts(accepted: list[dict], rejected: list[dict]) -> dict:
    """The numbers the card reports, computed from the records on disk."""
    dropped: Counter[str] = Counter()
    for row in accepted:
        dropped.update(row.get("dropped_qa", {}))
    failures = Counter(reason for row in accepted + rejected for reason in row.get("failures", []))
    bad_images = sum(1 for row in rejected if (row.get("failures") or [""])[0].startswith(BAD_IMAGE))
    return {
        "images": len(accepted),
        "captions": sum(1 for row in accepted if row.get("caption")),
        "qa_pairs": sum(len(row.get("qa", [])) for row in accepted),
        "rejected_images": len(rejected),
        "bad_images": bad_images,  # missing or broken files, rejected without asking the teacher
        "retried_images": sum(1 for row in accepted + rejected if row.get("failures")) - bad_images,
        "failures": dict(sorted(failures.items())),
        "dropped_qa_pairs": dict(sorted(dropped.items())),
    }


def _size_category(n: int) -> str:
    """The hub's size_categories bucket for n examples."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def write_card(root: Path) -> dict:
    """Write `root/README.md` (YAML front matter + description) from the files in `root`; return the counts."""
    root = Path(root)
    accepted, rejected = read_all(root)
    counts = card_counts(accepted, rejected)
    sources = sorted({row.get("source", "?") for row in accepted + rejected})
    teachers = sorted({row.get("teacher", "?") for row in accepted + rejected})
    versions = sorted({row.get("prompt_version") for row in accepted + rejected if row.get("prompt_version")})
    prompt = PROMPT_TEMPLATE.format(questions=QUESTIONS_WANTED.format(n="{n}"))
    metadata = DatasetCardData(
        pretty_name="Synthetic captions and questions",
        language=["en"],
        license="other",
        task_categories=["image-to-text", "visual-question-answering"],
        size_categories=[_size_category(counts["images"])],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": f"{DATA_DIR}/{SHARD_GLOB}"}]}],
        source_images=sources,
        teacher_model=teachers[0] if len(teachers) == 1 else teachers,
        prompt_version=versions[0] if len(versions) == 1 else versions,
        prompt=prompt,
        date=date.today().isoformat(),
        counts=counts,
    )
    failed = ", ".join(f"{n} {reason}" for reason, n in counts["failures"].items()) or "none"
    dropped = ", ".join(f"{n} {reason}" for reason, n in counts["dropped_qa_pairs"].items()) or "none"
    body = f"""
# Synthetic captions and questions

For each image, the teacher model `{metadata.teacher_model}` wrote a detailed caption and a few short
question-answer pairs, with this prompt (version {metadata.prompt_version}; `{{n}}` is the number of questions asked):

```text
{prompt}
```

Images: {", ".join(f"`{s}`" for s in sources) or "none yet"}. Written by `python -m synth` on {metadata.date}.

## Counts

| | |
|---|---|
| images | {counts["images"]:,} |
| captions | {counts["captions"]:,} |
| question-answer pairs | {counts["qa_pairs"]:,} |
| images rejected (failed twice, or a bad image file) | {counts["rejected_images"]:,} |
| bad image files (missing, unreadable, truncated) | {counts["bad_images"]:,} |
| images retried | {counts["retried_images"]:,} |
| failures, by reason | {failed} |
| dropped question-answer pairs, by reason | {dropped} |

## How it was checked

Every answer must hold a JSON object (Markdown fences and text around it are tolerated; a truncated or
malformed object fails) with a non-empty caption and at least one valid question. Pairs with an empty
question or answer, an answer longer than {MAX_ANSWER_WORDS} words, a repeated question, or beyond the number
asked are dropped. A failed image is retried once with sampling (temperature 0.7, top-p 0.9); if it fails
again it goes to `{REJECTED_FILE}` with the reasons and the raw output.

## Format and use

`{DATA_DIR}/{SHARD_GLOB}`: JSON lines, one image per line: `image` (its path when generated), `image_id`,
`source`, `caption`, `qa` (a list of `{{"question", "answer"}}`), `teacher`, `prompt_version`, `failures`
(reasons of a failed first answer), `dropped_qa` (pairs dropped, by reason).

    python train.py --data flickr30k,synthetic:PATH   # in this project: merged with the images' own captions
    datasets.load_dataset("json", data_files="PATH/{DATA_DIR}/{SHARD_GLOB}")

## Limitations

The text is machine-written and unreviewed: expect some wrong details and hallucinated objects. The images are
not included; their own terms apply (Flickr30k: non-commercial research use). The teacher's license applies to
its outputs (Qwen2.5-VL-3B-Instruct: the Qwen Research License).
"""
    card = DatasetCard(f"---\n{metadata.to_yaml()}\n---\n{body}")
    card.save(root / CARD_FILE)
    return counts
