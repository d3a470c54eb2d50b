"""Before a long run: is there room for what it will write? One warning line per file system when there is not.

A run that fills its disk fails at a checkpoint, hours in (the failure itself is one line and loses nothing that was
complete: `checkpoints/store.py`). Checking the free space first costs a few `stat` calls. What a run writes, about:

- **checkpoints** (the output folder): each holds the trainable weights (fp32), the training state (AdamW's two
  moments: twice the weights, plus the schedule and RNG) and a sidecar of kilobytes, so about 3 x the trainable size.
  At most `--keep-checkpoints` + 1 exist at once: a new one is complete before the oldest is deleted. A resumed run's
  checkpoints already on disk are subtracted.
- **frozen-encoder features** (the cache folder): images x feature size x 4 bytes (pooled) or 2 (hidden states),
  for the training images and the validation subset; nothing when they are cached already, and only the missing
  shards of an unfinished build.

The output and cache folders often share a file system; their needs then add up against its free space. Smaller
files (metrics.jsonl, a few hundred bytes a step; W&B's offline files) are not counted. The estimate is a warning,
never a refusal: the disk may be cleaned while the run goes on, and a run that does run out stops with one line.

Read next: `checkpoints/store.py` (how a checkpoint is written as one unit), `vision/cache.py` (the feature cache).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from bridge import VisionLanguageModel
from checkpoints.store import SUFFIXES
from runtime.files import human_bytes
from training.config import TrainConfig
from training.preflight import run_to_resume
from vision import FeatureCache
from vision.cache import MANIFEST_NAME, STORAGE_DTYPES

STATE_PER_WEIGHT = 2  # AdamW keeps two moments per trainable value, in the weights' dtype


@dataclass(frozen=True)
class Write:
    """About `size` bytes the run will write under `folder`, described as `what` in the warning."""

    folder: Path
    size: int
    what: str


def trainable_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def checkpoint_writes(output_dir: Path, trainable: int, keep: int, existing: int = 0) -> Write:
    """The checkpoints: `keep` + 1 of (weights + training state), less the `existing` bytes already on disk."""
    one = trainable * (1 + STATE_PER_WEIGHT)
    size = max((keep + 1) * one - existing, 0)
    return Write(output_dir, size, f"checkpoints: {keep + 1} x {human_bytes(one)} with --keep-checkpoints {keep}")


def feature_writes(cache: FeatureCache, encoder, image_lists: Sequence[Sequence[Path]], view: str) -> Write:
    """The frozen encoder's features of each list of images that are not cached yet."""
    shape = encoder.output_shape(view)
    per_image = math.prod(shape) * STORAGE_DTYPES[view].itemsize
    size = 0
    for paths in image_lists:
        if not paths:
            continue
        total = len(paths) * per_image
        try:
            manifest = json.loads((cache.directory(encoder, paths, view) / MANIFEST_NAME).read_text())
        except (OSError, ValueError):
            size += total  # not built yet (or unreadable: it will be rebuilt)
            continue
        if not manifest.get("done"):
            size += max(total - sum(entry.get("bytes", 0) for entry in manifest.get("shards", {}).values()), 0)
    return Write(cache.root, size, f"{encoder.name} {view} features of {sum(map(len, image_lists)):,} images")


def _existing_folder(path: Path) -> Path:
    """`path`, or its nearest parent that exists (the folder a run creates may not exist yet)."""
    path = Path(path).expanduser().absolute()
    for folder in (path, *path.parents):
        if folder.exists():
            return folder
    return path


def space_warnings(writes: Sequence[Write]) -> list[str]:
    """One line for each file system that has less free space than the `writes` on it need together."""
    by_device: dict[int, list[tuple[Write, Path]]] = {}
    for write in writes:
        if write.size <= 0:
            continue
        folder = _existing_folder(write.folder)
        by_device.setdefault(os.stat(folder).st_dev, []).append((write, folder))
    lines = []
    for group in by_device.values():
        need = sum(write.size for write, _ in group)
        folder = group[0][1]
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            continue
        if free < need:
            where = " and ".join(dict.fromkeys(str(write.folder) for write, _ in group))
            parts = "; ".join(f"{write.what}: {human_bytes(write.size)}" for write, _ in group)
            lines.append(
                f"low disk space: {human_bytes(free)} free for {where}, and this run will write about "
                f"{human_bytes(need)} there ({parts}); free some space, lower --keep-checkpoints, or choose another "
                "--output-dir / --cache-dir"
            )
    return lines


def check_space(cfg: TrainConfig, model: VisionLanguageModel, record_lists: Sequence[Sequence]) -> list[str]:
    """The warnings for this run (see the module docstring): its checkpoints in the output folder, and the features
    of `record_lists` (the training images, the validation subset) in the cache folder."""
    existing = 0
    if cfg.resume and (found := run_to_resume(cfg)) is not None:
        files = [weights.with_suffix(suffix) for weights in found.checkpoints for suffix in SUFFIXES]
        existing = sum(path.stat().st_size for path in files if path.exists())
    cache = FeatureCache(Path(cfg.cache_dir).expanduser() / "features")
    paths = [[record.path for record in records] for records in record_lists]
    return space_warnings(
        [
            checkpoint_writes(Path(cfg.output_dir), trainable_bytes(model), cfg.keep_checkpoints, existing),
            feature_writes(cache, model.encoder, paths, cfg.model.view),
        ]
    )
