"""The feature cache at Flickr30k's size: memory while training reads it, and how fast batches come out of it.

    python -m bench.feature_cache --work-dir /big/disk     # 31,783 x 197 x 768 float16: 9.6 GB written, then deleted
    python -m bench.feature_cache --images 4096 --no-write  # a quick look (two caches of 1.2 GB)

What it does:
1. Writes a synthetic cache with the cache's own writer (`vision/cache.py`: safetensors shards of 1,024 images and a
   manifest), shaped like ViT-B/16 hidden states of Flickr30k: 31,783 images x 197 tokens x 768, float16
   (`--images`). Random values: the content does not change what is read. A second, smaller cache
   (`--in-ram-images`, default 4,096 images = 1.2 GB) is written for the in-RAM path, whose whole-size run would hold
   9.6 GB in the process: too much for a shared machine.
2. In a fresh process per measurement (so one path's memory does not count against the other), reads one epoch
   of random training batches (`--batch-size` 32; every image once, in a shuffled order) as train.py does:
   `features[batch_indices]`, a LongTensor of rows.
   - memory-mapped (`FeatureCache.features()`'s default): an epoch with the file's pages evicted from the page cache
     first (`posix_fadvise(POSIX_FADV_DONTNEED)`: a cold read from disk), then a second, warm epoch;
   - in RAM (`in_memory=True`, the old path): load, then an epoch.
   A thread samples /proc/self/status every 5 ms: the peaks of `RssAnon` (the process's own memory: heap, tensors)
   and `RssFile` (pages of mapped files: the kernel's page cache, dropped when memory is needed, so not counted
   against the target). The target: RssAnon below 2 GB while training reads a Flickr30k-sized cache.
3. Deletes both caches (unless `--keep`), and writes the table into BENCHMARKS.md.

Read next: `vision/mapped.py` (the memory-mapped reading it measures), `BENCHMARKS.md` (the results).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from bench.common import (
    DEFAULT_WORK_DIR,
    command_line,
    machine,
    machine_line,
    make_parser,
    markdown_table,
    one_line_errors,
    parse_args,
    set_threads,
    today,
    verdict,
    write_section,
)
from vision.cache import FORMAT_VERSION, FeatureCache, _Shard

FLICKR30K_IMAGES = 31_783
VIT_B16_HIDDEN = (197, 768)  # 196 patches + CLS, width 768
MB, GB = 1e6, 1e9  # decimal units, as disk sizes are quoted (9.6 GB)
TARGET_RSS_ANON = 2 * GB


# ---------------------------------------------------------------------------------------------------------------------
# Memory of this process
# ---------------------------------------------------------------------------------------------------------------------


def rss() -> dict[str, int]:
    """RssAnon and RssFile of this process in bytes (/proc/self/status, Linux)."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            values[key] = int(rest.split()[0]) * 1024
    return values


class PeakSampler:
    """Samples rss() every `interval` seconds in a thread and keeps the peaks (a transient peak counts too)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval, self.peak = interval, {"RssAnon": 0, "RssFile": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval)

    def sample(self) -> None:
        for key, value in rss().items():
            self.peak[key] = max(self.peak[key], value)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# ---------------------------------------------------------------------------------------------------------------------
# The synthetic cache
# ---------------------------------------------------------------------------------------------------------------------


def write_cache(directory: Path, images: int, feature_shape: tuple[int, ...], shard_size: int) -> None:
    """A finished cache of random float16 features, written by FeatureCache's own shard and manifest writers."""
    cache = FeatureCache(directory.parent, shard_size=shard_size)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": FORMAT_VERSION,
        "key": "synthetic",
        "encoder": "synthetic",
        "weights": "none",
        "view": "hidden",
        "num_images": images,
        "feature_shape": list(feature_shape),
        "dtype": "float16",
        "shard_size": shard_size,
        "shards": {},
        "done": False,
    }
    generator = torch.Generator().manual_seed(0)
    for s, start in enumerate(range(0, images, shard_size)):
        stop = min(start + shard_size, images)
        features = torch.randn(stop - start, *feature_shape, generator=generator).to(torch.float16)
        shard = _Shard(start, stop, features, torch.ones(stop - start, dtype=torch.bool), filled=stop - start)
        cache._write_shard(s, shard, manifest, directory)
        print(f"\r  wrote {stop:,} of {images:,} images to {directory}", end="", flush=True)
    print()
    manifest["done"] = True
    cache._write_manifest(manifest, directory)
    os.sync()  # written pages reach the disk, so that the cold epoch can evict them from the page cache


def evict(directory: Path) -> None:
    """Drop the cache's files from the kernel's page cache (clean pages only), so that the next read is from disk."""
    for path in directory.glob("*.safetensors"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------------------------------------
# One measurement, in a fresh process
# ---------------------------------------------------------------------------------------------------------------------


def epoch(features, batch_size: int, seed: int) -> tuple[float, int]:
    """Seconds to gather every row once in shuffled batches, as train.py does; and the bytes gathered."""
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))
    gathered = 0
    start = time.perf_counter()
    for batch in order.split(batch_size):
        gathered += features[batch].nbytes
    return time.perf_counter() - start, gathered


def measure(path: str, directory: Path, batch_size: int) -> dict:
    """Open the cache in `directory` by `path` ("mapped" or "in_ram"), read epochs, report times and memory peaks."""
    result: dict = {"path": path, "at_start": rss()}
    cache = FeatureCache(directory.parent)
    with PeakSampler() as sampler:
        if path == "mapped":
            evict(directory)
            features, _ = cache.open(directory)
            result["cold"] = epoch(features, batch_size, seed=1)
            result["warm"] = epoch(features, batch_size, seed=2)
        else:
            start = time.perf_counter()
            features, _ = cache.open(directory, in_memory=True)
            result["load_s"] = time.perf_counter() - start
            result["warm"] = epoch(features, batch_size, seed=2)
    result["peak"] = sampler.peak
    result["images"], result["bytes"] = len(features), len(features) * features[0].nbytes
    return result


def run_child(path: str, directory: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "bench.feature_cache", "--child", path, "--child-dir", str(directory)]
    command += ["--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    print(f"  measuring {path} on {directory.name} ...", flush=True)
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------------------


def row(label: str, result: dict, which: str, batch_size: int, command: str) -> list[str]:
    seconds, gathered = result[which]
    batches = -(-result["images"] // batch_size)
    return [
        label,
        f"{result['images']:,} ({result['bytes'] / GB:.2f} GB)",
        f"{batches / seconds:,.0f}",
        f"{result['images'] / seconds:,.0f}",
        f"{gathered / MB / seconds:,.0f}",
        f"{result['peak']['RssAnon'] / MB:,.0f}",
        f"{result['peak']['RssFile'] / MB:,.0f}",
        f"`{command}`",
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--images", type=int, default=FLICKR30K_IMAGES, help="images in the mapped cache")
    parser.add_argument("--in-ram-images", type=int, default=4096, help="images in the cache read by the in-RAM path")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch of the epoch read")
    parser.add_argument("--shard-size", type=int, default=1024, help="images per shard (FeatureCache's default)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (see common.py)")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="where the caches are written")
    parser.add_argument("--keep", action="store_true", help="keep the caches (they are deleted by default)")
    parser.add_argument("--no-write", action="store_true", help="print the table only; leave BENCHMARKS.md alone")
    parser.add_argument("--child", choices=("mapped", "in_ram"), help=argparse.SUPPRESS)
    parser.add_argument("--child-dir", type=Path, help=argparse.SUPPRESS)
    return parser


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    minimums = {"images": 1, "in_ram_images": 1, "batch_size": 1, "shard_size": 1, "threads": 1}
    args = parse_args(parser, argv, minimums)
    set_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.child, args.child_dir, args.batch_size)))
        return 0

    command = command_line("bench.feature_cache", argv)
    info = machine()
    root = args.work_dir / "feature_cache"
    per_image = 2 * VIT_B16_HIDDEN[0] * VIT_B16_HIDDEN[1]
    needed = (args.images + args.in_ram_images) * per_image
    free = shutil.disk_usage(args.work_dir if args.work_dir.exists() else args.work_dir.parent).free
    if needed + GB > free:
        parser.error(f"{needed / GB:.1f} GB needed in --work-dir {args.work_dir}, {free / GB:.1f} GB free")
    full, small = root / f"synthetic-{args.images}", root / f"synthetic-{args.in_ram_images}"
    try:
        start = time.perf_counter()
        write_cache(full, args.images, VIT_B16_HIDDEN, args.shard_size)
        write_cache(small, args.in_ram_images, VIT_B16_HIDDEN, args.shard_size)
        written_s = time.perf_counter() - start
        mapped_full = run_child("mapped", full, args)
        mapped_small = run_child("mapped", small, args)
        in_ram_small = run_child("in_ram", small, args)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()[0]

    headers = [
        "path",
        "images (size)",
        "batches/s",
        "images/s",
        "MB/s",
        "peak RssAnon MB",
        "peak RssFile MB",
        "command",
    ]
    b = args.batch_size
    rows = [
        row("memory-mapped, cold page cache (read from disk)", mapped_full, "cold", b, command),
        row("memory-mapped, warm page cache", mapped_full, "warm", b, command),
        row("memory-mapped, cold page cache", mapped_small, "cold", b, command),
        row("memory-mapped, warm page cache", mapped_small, "warm", b, command),
        row("in RAM (`in_memory=True`, the old path)", in_ram_small, "warm", b, command),
    ]
    anon = mapped_full["peak"]["RssAnon"]
    full_bytes = args.images * per_image
    grown = in_ram_small["peak"]["RssAnon"] - in_ram_small["at_start"]["RssAnon"]
    body = f"""Run {today()}. Machine: {machine_line(info, load_after)}.

Settings: a synthetic cache written by `vision/cache.py`'s own writer (safetensors shards of {args.shard_size:,}
images and a manifest; {written_s:.0f} s to write both caches), shaped like ViT-B/16 hidden states: images x
{VIT_B16_HIDDEN[0]} x {VIT_B16_HIDDEN[1]} float16. One epoch of random batches of {b} images (a shuffled order, every
image once), gathered as train.py does (`features[batch_indices]`), in a fresh process per path. Cold = the cache's
pages evicted from the kernel's page cache first (`posix_fadvise(DONTNEED)`), so the epoch reads from disk; warm =
the epoch after it. Peaks sampled every 5 ms from /proc/self/status, from the process's start (Python, torch and
NumPy take {mapped_full["at_start"]["RssAnon"] / MB:,.0f} MB of RssAnon before anything is read). RssFile is the
mapped files' pages: the kernel's page cache, shared and reclaimable, not counted against the target. The in-RAM
path ran on the {args.in_ram_images:,}-image cache only (its RssAnon grew by {grown / MB:,.0f} MB for
{in_ram_small["bytes"] / MB:,.0f} MB of features): on the whole cache it would hold {full_bytes / GB:.1f} GB.

{markdown_table(headers, rows)}

Target (RssAnon < 2 GB while reading the {args.images:,}-image cache): {verdict(anon < TARGET_RSS_ANON)}
({anon / MB:,.0f} MB)."""
    print(body)
    if not args.no_write:
        write_section("feature_cache", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
