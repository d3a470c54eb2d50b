"""The generation loop: images in, checked records out, resumable, with a progress bar.

    images = list_images("flickr30k", cache_dir=Path(DEFAULT_CACHE_DIR), limit=1000)
    stats = generate(images, QwenTeacher(), Path("out/flickr30k-qwen"), n_questions=5, batch_size=8)

For each batch of images not done yet: ask the teacher (greedy decoding), check every answer (`prompt.py`),
ask again for the images that failed (sampling this time, since greedy decoding would repeat the same answer),
append the accepted records to a shard and the twice-failed ones to `rejected.jsonl`, flush. An image that
cannot be decoded is rejected without asking. Ctrl-C stops cleanly: what was flushed stays, the card is
rewritten, and the next run carries on from there.

Read next: `synth/dataset.py` (how the records are written, so that a rerun carries on).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from data.flickr30k import DEFAULT_HUB_REPO, read_hub
from data.images import image_problem, load_image
from data.synthetic import REJECTED_FILE, shard_paths
from errors import UserError
from vision.cache import ImagesPerSecond

from .dataset import BAD_IMAGE, ShardWriter, check_compatible, done_images, repair_partial_line, write_card
from .prompt import PROMPT_VERSION, ParsedResponse, build_prompt, parse_response

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
MAX_RAW_CHARS = 2000  # of a rejected answer, kept for inspection


class Teacher(Protocol):
    """What `generate` needs from a teacher (`QwenTeacher`, or a scripted one in the tests)."""

    name: str  # stored with every record

    def answer(self, images: list[Image.Image], prompt: str, sample: bool = False) -> list[str]: ...


@dataclass
class ImageItem:
    """One image to describe: where it is, its id (file name without extension) and the source it came from."""

    path: Path
    image_id: str
    source: str


@dataclass
class RunStats:
    """What one run did (the card has the totals over all runs)."""

    accepted: int = 0
    rejected: int = 0
    skipped_done: int = 0
    qa_pairs: int = 0
    failures: Counter[str] = field(default_factory=Counter)


def list_images(images: str, cache_dir: Path, limit: int | None = None) -> list[ImageItem]:
    """The images of `images`: "flickr30k" / "hf:OWNER/REPO" (a hub dataset in that layout) or a folder (searched
    recursively), sorted, at most `limit` of them. The same arguments give the same list, so `limit` can grow."""
    if images == "flickr30k" or images.startswith("hf:"):
        repo = DEFAULT_HUB_REPO if images == "flickr30k" else images.removeprefix("hf:")
        records, _ = read_hub(repo, Path(cache_dir).expanduser())
        items = sorted((ImageItem(r.path.resolve(), r.image_id, images) for r in records), key=lambda i: str(i.path))
    else:
        root = Path(images).expanduser().resolve()
        if not root.is_dir():
            raise UserError(f"--images {images!r} is neither 'flickr30k', 'hf:OWNER/REPO' nor a folder of images")
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        items = [ImageItem(p, p.stem, str(root)) for p in paths]
        if not items:
            raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
    return items[:limit] if limit else items


def _record(item: ImageItem, teacher: str, failures: list[str]) -> dict:
    """The fields every record (accepted or rejected) has."""
    return {
        "image": str(item.path),
        "image_id": item.image_id,
        "source": item.source,
        "teacher": teacher,
        "prompt_version": PROMPT_VERSION,
        "failures": failures,
    }


def generate(
    images: list[ImageItem],
    teacher: Teacher,
    out_dir: Path,
    n_questions: int = 5,
    batch_size: int = 8,
    seed: int = 0,
    console: Console | None = None,
    on_batch: Callable[[RunStats], None] | None = None,
) -> RunStats:
    """Describe every image of `images` not already in `out_dir` with `teacher`, appending checked records.

    `on_batch` is called after each flushed batch (for tests and progress hooks). Returns this run's counts;
    the dataset card is rewritten at the end, also after an interruption.
    """
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in [*shard_paths(out_dir), out_dir / REJECTED_FILE]:
        repair_partial_line(path)
    check_compatible(out_dir, teacher.name, PROMPT_VERSION)
    done = done_images(out_dir)
    todo = [item for item in images if str(item.path) not in done]
    stats = RunStats(skipped_done=len(images) - len(todo))
    prompt = build_prompt(n_questions)
    torch.manual_seed(seed)  # the retries sample: same seed, same data
    shards = ShardWriter(out_dir)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        ImagesPerSecond("images/s", digits=2),  # the teacher is slow: a few images per second
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
    )
    try:
        with progress, (out_dir / REJECTED_FILE).open("a", encoding="utf-8") as rejected_file:
            task = progress.add_task("describing", total=len(todo))
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                results = _describe_batch(batch, teacher, prompt, n_questions)
                for item, (parsed, failures, raw) in zip(batch, results, strict=True):
                    record = _record(item, teacher.name, failures)
                    stats.failures.update(failures)
                    if parsed is not None and parsed.ok:
                        qa = [{"question": q, "answer": a} for q, a in parsed.qa]
                        record |= {"caption": parsed.caption, "qa": qa, "dropped_qa": dict(parsed.dropped)}
                        shards.write(record)
                        stats.accepted += 1
                        stats.qa_pairs += len(qa)
                    else:
                        record["output"] = raw[:MAX_RAW_CHARS]
                        rejected_file.write(json.dumps(record, ensure_ascii=False) + "\n")
                        stats.rejected += 1
                shards.flush()
                rejected_file.flush()
                progress.update(
                    task,
                    advance=len(batch),
                    description=f"{stats.accepted} described, {stats.rejected} rejected",
                )
                if on_batch is not None:
                    on_batch(stats)
    finally:
        shards.close()
        write_card(out_dir)
    return stats


def _describe_batch(
    batch: list[ImageItem], teacher: Teacher, prompt: str, n_questions: int
) -> list[tuple[ParsedResponse | None, list[str], str]]:
    """For each image: (checked answer or None, reasons of failed answers, last raw answer)."""
    results: list[tuple[ParsedResponse | None, list[str], str]] = [(None, [], "")] * len(batch)
    pending: list[tuple[int, Image.Image]] = []  # (position in batch, decoded image)
    for i, item in enumerate(batch):
        image = load_image(item.path)  # decoded in full: a broken file fails here, not inside the processor
        if image is None:
            results[i] = (None, [f"{BAD_IMAGE} ({image_problem(item.path)})"], "")
        else:
            pending.append((i, image))
    for sample in (False, True):  # first greedy, then one sampled retry of what failed
        if not pending:
            break
        answers = teacher.answer([image for _, image in pending], prompt, sample=sample)
        still_failing = []
        for (i, image), raw in zip(pending, answers, strict=True):
            parsed = parse_response(raw, n_questions)
            failures = results[i][1] + ([] if parsed.ok else [parsed.failure])
            results[i] = (parsed, failures, raw)
            if not parsed.ok:
                still_failing.append((i, image))
        pending = still_failing
    return results
