"""Build what the rehearsal runs on, in its folder: the hub cache and a Flickr30k folder (`python -m rehearse.build`).

    ROOT/hf/hub/        Qwen/Qwen3-0.6B-Base, timm's ViT-B/16, open_clip's ViT-B/32 'openai', Qwen2.5-VL-3B-Instruct
    ROOT/flickr30k/     24 images (8 train, 8 val, 8 test), Karpathy's dataset_flickr30k.json
    ROOT/coco/          the same images and captions as COCO with Karpathy's dataset_coco.json over the 2017 folders
    ROOT/hf/hub/        ... and as a Parquet dataset repo, someone/captions (rehearse/captions.py)
    ROOT/build.json     the checks of what was built: the decoder file's size, the teacher loading in transformers

It runs in a process of its own, as the rehearsal's first command: making 3.6 GB of random weights and loading the
teacher once leave gigabytes with the process that did it, and every later command's memory is measured against
a machine that should not be holding them.

Read next: `rehearse/commands.py` (how the commands run and are measured).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from checkpoints.store import RUNS_DIR

from . import checks as c
from .captions import PARQUET_REPO, write_coco, write_parquet_repo
from .encoders import CLIP_REPO, VIT_REPO, write_clip_repo, write_vit_repo
from .flickr import write_flickr30k
from .qwen3 import DECODER_REPO, QWEN3_0_6B_BASE_CONFIG, write_decoder_repo
from .teacher import TEACHER_REPO, TEXT_BLOCKS, VISION_BLOCKS, write_teacher_repo

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = REPO.parent / "shared" / "qwen3-tokenizer"
SPLITS = {"train": 8, "val": 8, "test": 8}
Made = TypeVar("Made")


@dataclass(frozen=True)
class Workspace:
    """The rehearsal's folder and its parts."""

    root: Path

    @property
    def hf_home(self) -> Path:
        return self.root / "hf"

    @property
    def hub_cache(self) -> Path:
        return self.hf_home / "hub"

    @property
    def flickr(self) -> Path:
        return self.root / "flickr30k"

    @property
    def coco(self) -> Path:
        return self.root / "coco"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def build_checks(self) -> Path:
        return self.root / "build.json"

    def run_dir(self, name: str, models: Path | None = None) -> Path:
        return (models or self.models) / RUNS_DIR / name

    def snapshot(self, repo: str) -> Path:
        return next((self.hub_cache / f"models--{repo.replace('/', '--')}" / "snapshots").iterdir())


def timed(what: str, make: Callable[..., Made], *args) -> Made:
    started = time.perf_counter()
    result = make(*args)
    print(f"built {what} in {time.perf_counter() - started:.0f} s", flush=True)
    return result


def build(ws: Workspace) -> list[c.Check]:
    """Every snapshot and the Flickr30k folder; returns the checks of the snapshots themselves."""
    decoder = timed(DECODER_REPO, write_decoder_repo, ws.hub_cache, TOKENIZER_DIR)
    timed(VIT_REPO, write_vit_repo, ws.hub_cache)
    timed(CLIP_REPO, write_clip_repo, ws.hub_cache)
    teacher = timed(f"{TEACHER_REPO} ({TEXT_BLOCKS} text and {VISION_BLOCKS} vision blocks)", write_teacher_repo,
                    ws.hub_cache, TOKENIZER_DIR)  # fmt: skip
    flickr = timed(f"a Flickr30k folder of {sum(SPLITS.values())} images", write_flickr30k, ws.flickr, SPLITS)
    timed("the same as a COCO folder (Karpathy's split, 2017 folders)", write_coco, ws.coco, flickr)
    timed(f"the same as a Parquet dataset repo, {PARQUET_REPO}", write_parquet_repo, ws.hub_cache, flickr)
    return [decoder_file_check(decoder), teacher_load_check(teacher)]


def decoder_file_check(snapshot: Path) -> c.Check:
    """The fake release's size: 751.6M bf16 values (the tied head stored too), as in the release's 1.5 GB file."""
    values = c.stored_parameters(snapshot / "model.safetensors")
    expected = c.count(c.release_tensors(QWEN3_0_6B_BASE_CONFIG))
    return c.Check(f"{DECODER_REPO} model.safetensors", values == expected,
                   f"{values:,} bf16 values, {c.gb((snapshot / 'model.safetensors').stat().st_size)}",
                   f"{expected:,}: 28 blocks, the embedding and the stored copy of the tied head")  # fmt: skip


def teacher_load_check(snapshot: Path) -> c.Check:
    """transformers loads every tensor of the teacher's shards under the release's names (a missing one would be
    initialised at random without a word, and the teacher would run anyway)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    model, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        str(snapshot), dtype=torch.bfloat16, output_loading_info=True
    )
    tensors = len(model.state_dict()) - 1  # the tied head is not stored
    problems = {key: len(value) for key, value in info.items() if value}
    return c.Check(f"{TEACHER_REPO}: transformers loads its files", not problems,
                   f"{tensors} tensors, " + (", ".join(f"{n} {k}" for k, n in problems.items()) or "nothing missing"),
                   "every tensor found, none missing, unexpected or mismatched")  # fmt: skip


def read_build_checks(ws: Workspace) -> list[c.Check]:
    if not ws.build_checks.exists():
        return [c.Check("build", False, "no build.json: the build failed", "the hub cache and the Flickr30k folder")]
    return [c.Check(**fields) for fields in json.loads(ws.build_checks.read_text())]


def main(argv: list[str]) -> int:
    ws = Workspace(Path(argv[0]))
    ws.build_checks.write_text(json.dumps([asdict(check) for check in build(ws)]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
