"""Reading COCO's Karpathy split file at full size: the seconds to read and split it, and the peak memory.

    python -m bench.data_loading      # writes a ~150 MB dataset_coco.json into a temporary folder, then deletes it
    python -m bench.data_loading --keep --work-dir /tmp/coco-bench   # keep the file (written once, then reused)

What it does:
1. Writes a synthetic `dataset_coco.json` in Karpathy's schema at COCO's size: 123,287 images (82,783 train, 30,504
   restval, 5,000 val, 5,000 test, as in the real file), 616,767 sentences (five per image, six or seven for 332 of
   them), each with its `tokens` list and a `raw` caption ending in a space. About 150 MB, like the real file, most
   of it the token lists. No image files: only reading the annotations is measured, so the folder holds empty
   `train2014/` and `val2014/` folders for the layout to be detected, and images are never decoded.
2. In a fresh process, detects and reads it as `load_dataset` does (`data.coco.find_coco`, `read_coco`: every record
   with its path and captions), splits it (`split_records(records, "karpathy")`, checked to give 113,287 / 5,000 /
   5,000), and reports the seconds of each and the process's peak resident memory
   (`resource.getrusage(RUSAGE_SELF).ru_maxrss`, which counts the whole life of the process, imports included, and
   carries over across fork and exec: so the children are started before this process imports torch).
   That process imports the loader's modules without `data/__init__.py`, because that imports torch (for
   `batches.py`), and torch's shared libraries alone are about 600 MB of resident, file-backed pages on Linux: the
   library's memory, not the loader's. A second fresh process does the same after `import data` (torch included), as
   inside train.py, for comparison.
3. Prints its section and writes it into BENCHMARKS.md, between its markers (`--no-write`: print only).

The target: reading and splitting in at most 10 s and 1 GB peak resident memory on a 2-core machine.

Read next: `data/coco.py` (what is measured), `data/flickr30k.py` `read_karpathy_json` (why it fits in memory).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS, TARGET_RSS = 10.0, 1e9
# Karpathy's COCO split: (label, folder, images); restval joins train, giving 113,287 / 5,000 / 5,000.
KARPATHY_SPLITS = [("train", "train2014", 82_783), ("restval", "val2014", 30_504)]
KARPATHY_SPLITS += [("val", "val2014", 5_000), ("test", "val2014", 5_000)]
SENTENCES = 616_767  # 5 x 123,287 = 616,435, and 332 more: some images have 6 or 7
WORDS = (
    "a an the man woman person people child boy girl dog cat horse bus train car truck bike motorcycle plane street "
    "road table plate pizza cake food kitchen room bed couch sitting standing riding holding eating looking walking "
    "next to on of in with near front top white black red blue green large small two three group field grass water "
    "beach snow sky building city tree park sign clock window wall floor is are and at while his her its their"
).split()


# ---------------------------------------------------------------------------------------------------------------------
# The synthetic file


def write_dataset_coco(folder: Path, seed: int = 0) -> Path:
    """A full-size dataset_coco.json in Karpathy's schema (no images), beside empty train2014/ and val2014/."""
    rng = random.Random(seed)
    for name in ("train2014", "val2014"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    images = sum(n for _, _, n in KARPATHY_SPLITS)
    extra = SENTENCES - 5 * images  # 332: the first 10 images get 7 sentences, the next 312 get 6
    imgid, sentid = 0, 770_337
    path = folder / "dataset_coco.json"
    with path.open("w") as f:
        f.write('{"images": [')
        for label, image_folder, count in KARPATHY_SPLITS:
            for _ in range(count):
                n_sentences = 7 if imgid < 10 else 6 if imgid < extra - 10 else 5
                sentences = []
                for _ in range(n_sentences):
                    tokens = rng.choices(WORDS, k=rng.randint(8, 14))
                    raw = " ".join(tokens).capitalize() + ". "  # the real raw captions end in a space
                    sentences.append({"tokens": tokens, "raw": raw, "imgid": imgid, "sentid": sentid})
                    sentid += 1
                cocoid = 100_000 + imgid
                image = {
                    "filepath": image_folder,
                    "sentids": [s["sentid"] for s in sentences],
                    "filename": f"COCO_{image_folder}_{cocoid:012d}.jpg",
                    "imgid": imgid,
                    "split": label,
                    "sentences": sentences,
                    "cocoid": cocoid,
                }
                f.write((", " if imgid else "") + json.dumps(image))
                imgid += 1
        f.write('], "dataset": "coco"}')
    assert sentid - 770_337 == SENTENCES
    return path


# ---------------------------------------------------------------------------------------------------------------------
# One measurement, in a fresh process


def max_rss() -> int:
    """The peak resident memory of this process so far, in bytes (ru_maxrss is KiB on Linux, bytes on macOS)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def import_loader(with_torch: bool) -> None:
    """Make `data.coco` importable; without torch, by registering the `data` package without running its __init__."""
    if with_torch:
        import data  # noqa: F401  (as train.py has it: torch and the whole package)
    else:
        package = types.ModuleType("data")
        package.__path__ = [str(REPO / "data")]
        sys.modules["data"] = package


def measure(folder: Path, with_torch: bool) -> dict:
    """Seconds to detect and read the folder's dataset_coco.json and to split it; peak memory before and after."""
    import_loader(with_torch)
    from data.coco import find_coco, read_coco
    from data.splits import split_records

    before = max_rss()
    start = time.perf_counter()
    records, report = read_coco(folder, find_coco(folder))
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    splits = split_records(records, "karpathy")
    split_s = time.perf_counter() - start
    assert splits.sizes() == (113_287, 5_000, 5_000), splits.sizes()
    captions = sum(len(r.captions) for r in records)
    assert captions == SENTENCES and report.layout == "coco-karpathy-json", (captions, report.layout)
    return {"read_s": read_s, "split_s": split_s, "rss_before": before, "rss_peak": max_rss(), "images": len(records)}


def run_child(folder: Path, with_torch: bool) -> dict:
    command = [sys.executable, "-m", "bench.data_loading", "--child", str(folder)]
    command += ["--with-torch"] if with_torch else []
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------------------
# The report


def build_parser() -> argparse.ArgumentParser:
    from errors import OneLineArgumentParser  # light: bench.common would import torch (see the report below)

    parser = OneLineArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=None, help="where the file is written (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the file (and reuse it next time)")
    parser.add_argument("--no-write", action="store_true", help="print the section only; leave BENCHMARKS.md alone")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--with-torch", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.work_dir is not None and args.work_dir.exists() and not args.work_dir.is_dir():
        parser.error(f"--work-dir {args.work_dir} is a file; expected a folder")
    if args.child:
        print(json.dumps(measure(args.child, args.with_torch)))
        return 0

    folder = args.work_dir or Path(tempfile.mkdtemp(prefix="coco-bench-"))
    annotation = folder / "dataset_coco.json"
    try:
        if not annotation.is_file():
            start = time.perf_counter()
            write_dataset_coco(folder)
            print(
                f"wrote {annotation} ({annotation.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - start:.0f} s"
            )
        size_mb = annotation.stat().st_size / 1e6
        loader, with_torch = run_child(folder, False), run_child(folder, True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    # Only now: bench.common imports torch, and a child forked from a process that holds it would start with its
    # resident memory as ru_maxrss (which survives fork and exec).
    from bench.common import command_line, cpu_name, markdown_table, today, write_section

    seconds = loader["read_s"] + loader["split_s"]
    met = seconds <= TARGET_SECONDS and loader["rss_peak"] <= TARGET_RSS
    headers = [
        "file",
        "images / sentences",
        "read (s)",
        "split (s)",
        "peak RSS: loader (before reading)",
        "peak RSS after `import data` (torch)",
        "target (10 s, 1 GB)",
    ]
    row = [
        f"synthetic dataset_coco.json, {size_mb:.0f} MB",
        f"{loader['images']:,} / {SENTENCES:,}",
        f"{loader['read_s']:.1f}",
        f"{loader['split_s']:.2f}",
        f"{loader['rss_peak'] / 1e6:,.0f} MB ({loader['rss_before'] / 1e6:,.0f} MB)",
        f"{with_torch['rss_peak'] / 1e6:,.0f} MB ({with_torch['rss_before'] / 1e6:,.0f} MB)",
        "**met**" if met else "**not met**",
    ]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    body = f"""Run {today()}. Machine: {cpu_name()}, {cores} cores, Python {sys.version.split()[0]}. Command:
`{command_line("bench.data_loading", argv)}`.

A synthetic `dataset_coco.json` at full size, in Karpathy's real schema (`tokens` lists included), read and split by
Karpathy's labels as `load_dataset` does (images are not decoded: only the annotations are measured). Peak RSS is the
whole process's (`ru_maxrss`): the loader's modules alone, and after `import data` as inside train.py, where torch's
shared libraries take about 600 MB before anything is read (the number in brackets: the peak before reading).

{markdown_table(headers, [row])}

Target (read and split in at most 10 s and 1 GB for the annotations): {"**met**" if met else "**not met**"}."""
    print(body)
    if not args.no_write:
        write_section("data_loading", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
