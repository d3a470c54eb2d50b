"""Feature extraction with DataLoader workers: images/s of `FeatureCache.features(..., num_workers=N)` (`--num-workers`).

    python -m bench.feature_extraction                        # 512 JPEGs, 0 vs 2 workers, 5 repeats; ~1 minute
    python -m bench.feature_extraction --workers 0 2 4 --repeats 3 --vit-images 32 --no-write

Extracting features decodes each JPEG, resizes and crops it to 224 x 224 and normalises it (the encoder's own eval
transform), then runs the frozen encoder. With `num_workers=0` the main process does it all, one step after the
other; with N workers, N processes decode and resize the next batches while the main process runs the encoder.

What it does:
1. Writes `--images` JPEGs of 500 x 375 pixels (Flickr30k's usual size) at quality 90: smooth random colour fields
   with grain, so that they compress like photographs rather than like noise. Their mean size is in the table.
2. Builds the encoders with random weights (no download):
   - "ViT-B/16 preprocessing + light ViT": timm's vit_base_patch16_224 cut to one block of width 64 (197 tokens at
     224 px), behind ViT-B/16's own eval transform (resize to 248, centre crop 224, normalise). Its forward is cheap
     (about 2 ms an image here, against about 12 ms to decode and resize it), as a GPU's encoder would be, so the
     rows measure what workers are for: the image decoding and resizing.
   - "ViT-B/16" (with `--vit-images N`): the whole model on this CPU, where the encoder (about 1 s an image on one
     shared core), not the images, sets the pace.
3. Times `FeatureCache(fresh folder).features(encoder, paths, "pooled", batch_size=64, num_workers=N)` (the worker
   processes' start included), alternating the worker counts (0 2, 2 0, ...) so that a neighbour's load falls on
   both; the median and min-max of the repeats. The features of every N are checked to be identical to N = 0.
4. Writes the table into BENCHMARKS.md (section "feature_extraction"), unless `--no-write`.

Read next: `vision/cache.py` (the extraction measured here), BENCHMARKS.md (the measured rows).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

from bench.common import (
    DEFAULT_WORK_DIR,
    command_line,
    machine,
    machine_line,
    make_parser,
    markdown_table,
    median,
    one_line_errors,
    parse_args,
    set_threads,
    today,
    write_section,
)
from vision import FeatureCache, VisionEncoder, build_encoder
from vision.encoders import VIT_ARCH, TimmViTEncoder

WIDTH, HEIGHT = 500, 375


def write_jpegs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` photo-like JPEGs of 500 x 375 at quality 90 (smooth colour fields + grain)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC), np.int16)
        grain = rng.normal(0, 12, size=(HEIGHT, WIDTH, 1))  # [H, W, 1]: the same on the three channels
        pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
        paths.append(folder / f"{i:06d}.jpg")
        Image.fromarray(pixels).save(paths[-1], quality=90)
    return paths


def light_encoder(vit: VisionEncoder) -> VisionEncoder:
    """A 1-block, 64-wide ViT at 224 px (random weights) behind ViT-B/16's own preprocessing."""
    torch.manual_seed(0)
    model = timm.create_model(VIT_ARCH, pretrained=False, num_classes=0, embed_dim=64, depth=1, num_heads=1)
    return TimmViTEncoder(model, name="vit-light", weights="none", preprocess=vit.preprocess)


def extract(
    encoder: VisionEncoder, paths: list[Path], workers: int, work_dir: Path
) -> tuple[float, float, torch.Tensor]:
    """(wall seconds, the main process's CPU seconds) to extract the pooled features of `paths` into a fresh cache,
    and the features. The workers' CPU time is not in the second number: it is what they take off the main process."""
    root = Path(tempfile.mkdtemp(dir=work_dir, prefix="cache-"))
    try:
        start, cpu = time.perf_counter(), time.process_time()
        features, _ = FeatureCache(root, progress=False).features(
            encoder, paths, "pooled", batch_size=64, num_workers=workers, in_memory=True
        )
        return time.perf_counter() - start, time.process_time() - cpu, features
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(
    encoder: VisionEncoder, paths: list[Path], workers: list[int], repeats: int, work_dir: Path
) -> dict[int, tuple[list[float], list[float], bool]]:
    """workers -> (images/s of each repeat, main-process CPU ms per image of each, features identical to the first
    worker count's), with the worker counts alternating."""
    rates: dict[int, list[float]] = {w: [] for w in workers}
    cpu_ms: dict[int, list[float]] = {w: [] for w in workers}
    reference: torch.Tensor | None = None
    same = dict.fromkeys(workers, True)
    for r in range(repeats):
        for w in workers if r % 2 == 0 else workers[::-1]:
            seconds, cpu, features = extract(encoder, paths, w, work_dir)
            rates[w].append(len(paths) / seconds)
            cpu_ms[w].append(1000 * cpu / len(paths))
            if w == workers[0] and reference is None:
                reference = features
            if reference is not None:
                same[w] = same[w] and torch.equal(features, reference)
            print(f"  {encoder.name}, {w} workers: {len(paths) / seconds:.1f} images/s", flush=True)
    return {w: (rates[w], cpu_ms[w], same[w]) for w in workers}


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--images", type=int, default=512, help="JPEGs for the light encoder's rows")
    parser.add_argument("--vit-images", type=int, default=0, help="JPEGs for ViT-B/16 rows (0: none)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts; the first is the base")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per worker count (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads of the main process")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="where the JPEGs and caches go")
    parser.add_argument("--no-write", action="store_true", help="print the table only; leave BENCHMARKS.md alone")
    return parser


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    minimums = {"images": 1, "vit_images": 0, "workers": 0, "repeats": 1, "threads": 1}
    args = parse_args(parser, argv, minimums)
    set_threads(args.threads)
    command = command_line("bench.feature_extraction", argv)
    info = machine()

    folder = args.work_dir / "feature_extraction"
    shutil.rmtree(folder, ignore_errors=True)
    try:
        paths = write_jpegs(folder / "images", max(args.images, args.vit_images))
        mean_kb = sum(p.stat().st_size for p in paths) / len(paths) / 1000
        vit = build_encoder("vit", "none")
        runs = [
            ("ViT-B/16 preprocessing + light ViT (1 block, width 64, random weights)", light_encoder(vit), args.images)
        ]
        if args.vit_images:
            runs.append(("ViT-B/16 (random weights), on this CPU", vit, args.vit_images))
        results = [(label, n, measure(enc, paths[:n], args.workers, args.repeats, folder)) for label, enc, n in runs]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    load_after = os.getloadavg()[0]

    rows = []
    for label, n, by_workers in results:
        base = median(by_workers[args.workers[0]][0])
        for w, (rates, cpu, same) in by_workers.items():
            rows.append(
                [
                    label,
                    f"{n:,}",
                    str(w),
                    f"{median(rates):.1f} ({min(rates):.1f}-{max(rates):.1f})",
                    f"{median(rates) / base:.2f}x",
                    f"{median(cpu):.1f} ({min(cpu):.1f}-{max(cpu):.1f})",
                    "yes" if same else "**no**",
                    f"`{command}`",
                ]
            )
    headers = ["encoder", "images", "workers", "images/s", "speed-up", "main-process CPU ms/image", "same features"]
    headers.append("command")
    body = f"""Run {today()}. Machine: {machine_line(info, load_after)}.

Settings: `FeatureCache.features(encoder, paths, "pooled", batch_size=64, num_workers=N)` into a fresh cache folder
each time, timed from the call to its return (worker start-up included). JPEGs of {WIDTH} x {HEIGHT} at quality 90,
photo-like (smooth colour fields with grain; {mean_kb:.0f} kB on average), read from the page cache. Preprocessing
is ViT-B/16's eval transform (decode, resize to 248, centre crop 224, normalise). The light encoder (one ViT block of
width 64 at 224 px) costs little, as a GPU's encoder would: its rows measure the image work that workers take off
the main process. Median (min-max) of {args.repeats} repeats, worker counts alternating; speed-up = images/s over
{args.workers[0]} workers'. Main-process CPU = `time.process_time()` of the process that runs the encoder, per image:
the work left on the process that, on a GPU machine, has to keep the GPU fed (the workers' own CPU time is not in
it). Same features = bit-identical to {args.workers[0]} workers.

{markdown_table(headers, rows)}"""
    print(body)
    if not args.no_write:
        write_section("feature_extraction", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
