"""Tests for the caches several runs share: the feature cache (`vision/cache.py`) and the dataset extraction
(`data/flickr30k.py` `extract_once`, the shapes set of `data/loading.py`).

- Workers: features are identical with 0 and 2 DataLoader workers.
- Shared: two processes building one cache at once both finish, one builds, the features are identical; a builder
  killed with SIGKILL blocks no one, and its finished shards are reused.
- Damaged: a truncated, byte-flipped, deleted or garbled shard is reported in one line and rebuilt, never read.
- Full: under a file-size limit (a stand-in for a full disk) a write of a shard, the manifest, an extracted zip or
  the shapes set ends in one line naming the file, and leaves no half-written or orphaned file.

Processes are forked (`tests/forked.py`): the children share the test's imports, so each test takes seconds.
"""

from __future__ import annotations

import json
import logging
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from forked import FORK, Forked, wait_for
from PIL import Image

from data import load_dataset
from data.flickr30k import extract_once
from data.shapes import generate_shapes
from errors import UserError
from vision import FeatureCache, VisionEncoder, build_encoder
from vision.cache import MANIFEST_NAME

WAITING = "another process is building"


def _write_images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 256, size=(30 + 2 * i, 40 + 3 * i, 3), dtype=np.uint8)
        paths.append(folder / f"img_{i}.jpg")
        Image.fromarray(pixels).save(paths[-1], quality=90)
    return paths


def _count_forward(encoder: VisionEncoder, monkeypatch: pytest.MonkeyPatch, before=None) -> list[int]:
    """Record the batch size of every encoder call; `before(call_number)` runs first (to wait, or to hang)."""
    calls: list[int] = []
    original = encoder.forward

    def forward(pixel_values: torch.Tensor, view: str = "pooled") -> torch.Tensor:
        calls.append(pixel_values.shape[0])
        if before is not None:
            before(len(calls))
        return original(pixel_values, view)

    monkeypatch.setattr(encoder, "forward", forward)
    return calls


class _MarkWhenWaiting(logging.Handler):
    """Touches `marker` when this process logs that it waits for another builder."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.marker = marker

    def emit(self, record: logging.LogRecord) -> None:
        if WAITING in record.getMessage():
            self.marker.touch()


def _no_stray_files(root: Path) -> None:
    """No temporary file anywhere, and every shard on disk is listed in its directory's manifest."""
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp") or ".partial-" in p.name]
    for directory in (p for p in root.iterdir() if p.is_dir()):
        listed = set()
        if (directory / MANIFEST_NAME).is_file():
            listed = {s["file"] for s in json.loads((directory / MANIFEST_NAME).read_text())["shards"].values()}
        assert {p.name for p in directory.glob("shard_*")} <= listed, f"orphaned shards in {directory}"


@pytest.fixture(scope="module")
def encoder() -> VisionEncoder:
    return build_encoder("tiny")


# One torch thread, as in the forked children: the encoder's float sums then come out bit-identical in both.
pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- workers


def test_features_with_two_workers_equal_those_without(tmp_path: Path, encoder: VisionEncoder) -> None:
    paths = _write_images(tmp_path / "images", 7)
    broken = tmp_path / "images" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    paths = paths[:3] + [broken, tmp_path / "missing.jpg"] + paths[3:]
    caches = FeatureCache(tmp_path / "a", shard_size=4), FeatureCache(tmp_path / "b", shard_size=4)
    serial, valid = caches[0].features(encoder, paths, "hidden", batch_size=3)
    parallel, valid_parallel = caches[1].features(encoder, paths, "hidden", batch_size=3, num_workers=2)
    assert torch.equal(parallel[:], serial[:]) and torch.equal(valid_parallel, valid)
    assert valid.tolist() == [True] * 3 + [False] * 2 + [True] * 4
    manifests = [json.loads((c.directory(encoder, paths, "hidden") / MANIFEST_NAME).read_text()) for c in caches]
    invalid = [[e for s in m["shards"].values() for e in s["invalid"]] for m in manifests]
    assert invalid[0] == invalid[1] and [e["index"] for e in invalid[0]] == [3, 4]


# ---------------------------------------------------------------- shared caches


def test_two_processes_building_one_cache_share_one_build(
    tmp_path: Path, encoder: VisionEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _write_images(tmp_path / "images", 6)
    marker = tmp_path / "someone-waits"

    def until_the_other_waits(call: int) -> None:  # the builder holds the lock until the other process waits on it
        if call == 1:
            wait_for(marker, timeout=60)

    calls = _count_forward(encoder, monkeypatch, before=until_the_other_waits)
    barrier = FORK.Barrier(2)

    def build() -> tuple[list[int], np.ndarray, np.ndarray]:  # (NumPy: a tensor would travel by shared memory)
        logging.getLogger("runtime.files").addHandler(_MarkWhenWaiting(marker))
        barrier.wait(timeout=60)  # both start together
        features, valid = FeatureCache(tmp_path / "cache", shard_size=4).features(
            encoder, paths, "pooled", batch_size=2
        )
        return calls, features[:].numpy(), valid.numpy()

    children = [Forked(build), Forked(build)]
    results = [child.result() for child in children]
    assert [status for status, _ in results] == ["ok", "ok"], results
    counts = sorted(sum(r[1][0]) for r in results)
    assert counts == [0, 6]  # one process computed all six images; the other waited, then read them
    assert marker.exists()
    (_, first, first_valid), (_, second, second_valid) = (r[1] for r in results)
    assert np.array_equal(first, second) and np.array_equal(first_valid, second_valid) and first_valid.all()
    monkeypatch.undo()
    fresh, _ = FeatureCache(tmp_path / "fresh", shard_size=4).features(encoder, paths, "pooled", batch_size=2)
    assert np.array_equal(first, fresh[:].numpy())


@pytest.mark.parametrize("workers", [0, 2])
def test_a_killed_builder_blocks_no_one_and_its_shards_are_reused(
    tmp_path: Path,
    encoder: VisionEncoder,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    workers: int,
) -> None:
    # With DataLoader workers too: they are forked while the builder holds the lock, and outlive it for a moment.
    paths = _write_images(tmp_path / "images", 5)
    hanging = tmp_path / "hanging"

    def hang_on_the_third_batch(call: int) -> None:
        if call == 3:
            hanging.touch()
            time.sleep(600)

    _count_forward(encoder, monkeypatch, before=hang_on_the_third_batch)
    cache = FeatureCache(tmp_path / "cache", shard_size=2)  # shards [0, 2), [2, 4), [4, 5); batches of 2
    build = lambda: cache.features(encoder, paths, "pooled", batch_size=2, num_workers=workers)  # noqa: E731
    builder = Forked(build, daemon=False)  # not a daemon: it may start worker processes
    try:
        wait_for(hanging)
    finally:
        builder.kill()  # SIGKILL while holding the lock, shards 0 and 1 written, shard 2 not

    monkeypatch.undo()
    calls = _count_forward(encoder, monkeypatch)
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        features, valid = cache.features(encoder, paths, "pooled", batch_size=2)
    assert time.monotonic() - started < 30 and WAITING not in caplog.text
    assert calls == [1]  # only the missing last shard
    monkeypatch.undo()
    fresh, _ = FeatureCache(tmp_path / "fresh", shard_size=2).features(encoder, paths, "pooled", batch_size=2)
    assert torch.equal(features[:], fresh[:]) and valid.all()
    _no_stray_files(tmp_path / "cache")


def test_two_processes_loading_the_shapes_set_generate_it_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker, generated = tmp_path / "someone-waits", tmp_path / "generated"
    generated.mkdir()

    def generate_when_the_other_waits(folder: Path, **kwargs) -> Path:
        (generated / str(time.monotonic_ns())).touch()  # one file per generation
        wait_for(marker, timeout=60)
        return generate_shapes(folder, **kwargs)

    monkeypatch.setattr("data.loading.generate_shapes", generate_when_the_other_waits)
    barrier = FORK.Barrier(2)

    def load() -> list[str]:
        logging.getLogger("runtime.files").addHandler(_MarkWhenWaiting(marker))
        barrier.wait(timeout=60)
        splits, _ = load_dataset("shapes", cache_dir=tmp_path / "cache", shapes_images=20)
        return sorted(r.image_id for r in splits.train)

    children = [Forked(load), Forked(load)]
    results = [child.result() for child in children]
    assert results[0] == results[1] and results[0][0] == "ok", results
    assert len(list(generated.iterdir())) == 1 and marker.exists()


# ---------------------------------------------------------------- damaged caches


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damaged_shards_are_reported_and_rebuilt(
    tmp_path: Path, encoder: VisionEncoder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    paths = _write_images(tmp_path / "images", 10)
    cache = FeatureCache(tmp_path / "cache", shard_size=2)  # five shards of two images
    original, _ = cache.features(encoder, paths, "hidden", in_memory=True)
    directory = cache.directory(encoder, paths, "hidden")
    shard = [directory / f"shard_{s:05d}.safetensors" for s in range(5)]

    size = shard[0].stat().st_size
    with shard[0].open("r+b") as f:
        f.truncate(size // 2)  # an interrupted copy
    _flip_byte(shard[2], size - 10)  # one byte of the features changed: only the checksum sees it
    shard[3].unlink()  # deleted
    _flip_byte(shard[4], 9)  # the header's JSON broken

    calls = _count_forward(encoder, monkeypatch)
    with caplog.at_level(logging.WARNING, logger="vision.cache"):
        mapped, valid = cache.features(encoder, paths, "hidden", batch_size=2)
    lines = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(lines) == 4 and all("\n" not in line and "rebuilding it" in line for line in lines)
    assert f"{shard[0]} is damaged ({size // 2:,} bytes, not the {size:,} written)" in lines[0]
    assert f"{shard[2]} is damaged (CRC-32 " in lines[1]
    assert f"{shard[3]} is damaged (missing)" in lines[2]
    assert f"{shard[4]} is damaged (" in lines[3]
    assert calls == [2, 2, 2, 2]  # the four damaged shards, nothing else
    assert torch.equal(mapped[:], original) and valid.all()

    caplog.clear()
    calls.clear()
    with caplog.at_level(logging.WARNING, logger="vision.cache"):
        again, _ = cache.features(encoder, paths, "hidden")
    assert calls == [] and "damaged" not in caplog.text and torch.equal(again[:], original)


def test_a_manifest_without_checksums_still_gets_the_header_check(
    tmp_path: Path, encoder: VisionEncoder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Manifests written before checksums list no size or CRC-32: the safetensors header still catches a truncation.
    paths = _write_images(tmp_path / "images", 4)
    cache = FeatureCache(tmp_path / "cache", shard_size=2)
    original = cache.features(encoder, paths, "pooled")[0][:]  # a copy: the test truncates the mapped file below
    directory = cache.directory(encoder, paths, "pooled")
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    for entry in manifest["shards"].values():
        del entry["bytes"], entry["crc32"]
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))

    calls = _count_forward(encoder, monkeypatch)
    assert torch.equal(cache.features(encoder, paths, "pooled")[0][:], original) and calls == []  # still valid
    shard = directory / "shard_00001.safetensors"
    (header_size,) = struct.unpack("<Q", shard.read_bytes()[:8])
    with shard.open("r+b") as f:
        f.truncate(8 + header_size + 100)
    with caplog.at_level(logging.WARNING, logger="vision.cache"):
        features, _ = cache.features(encoder, paths, "pooled")
    assert "shard_00001.safetensors is damaged" in caplog.text and "its header declares" in caplog.text
    assert calls == [2] and torch.equal(features[:], original)


def test_open_refuses_a_damaged_cache(tmp_path: Path, encoder: VisionEncoder) -> None:
    paths = _write_images(tmp_path / "images", 3)
    cache = FeatureCache(tmp_path / "cache", shard_size=2)
    cache.features(encoder, paths, "pooled")
    directory = cache.directory(encoder, paths, "pooled")
    _flip_byte(directory / "shard_00000.safetensors", -1)
    with pytest.raises(UserError, match="has damaged shards; `features\\(\\)` rebuilds them"):
        cache.open(directory)


# ---------------------------------------------------------------- full disks


@pytest.mark.parametrize("fails_at", ["shard", "manifest"])
def test_a_cache_write_that_fails_is_one_line_and_leaves_no_stray_file(
    tmp_path: Path, encoder: VisionEncoder, fails_at: str
) -> None:
    paths = _write_images(tmp_path / "images", 8)
    # Batches of one image: a resumed build then computes each image exactly as a build in one go does.
    reference, _ = FeatureCache(tmp_path / "reference", shard_size=1).features(encoder, paths, "pooled", batch_size=1)
    directory = FeatureCache(tmp_path / "reference", shard_size=1).directory(encoder, paths, "pooled")
    shard_bytes = (directory / "shard_00000.safetensors").stat().st_size
    manifest_bytes = (directory / MANIFEST_NAME).stat().st_size  # the last manifest ("done": true) is the shortest
    assert shard_bytes < manifest_bytes - 1
    # Below one shard, the first shard fails; just below the final manifest, the manifest after the last shard does.
    limit = shard_bytes - 10 if fails_at == "shard" else manifest_bytes - 1

    cache = FeatureCache(tmp_path / "cache", shard_size=1)
    build = lambda: cache.features(encoder, paths, "pooled", batch_size=1)  # noqa: E731
    status, message = Forked(build, file_size_limit=limit).result()
    assert status == "user_error" and "\n" not in message, message
    name = "shard_00000.safetensors" if fails_at == "shard" else MANIFEST_NAME
    assert message.startswith(f"cannot write {cache.directory(encoder, paths, 'pooled') / name}: file too large")
    assert "it needs about" in message and "(ulimit -f)" in message
    _no_stray_files(tmp_path / "cache")
    if fails_at == "shard":
        assert not cache.directory(encoder, paths, "pooled").exists()  # it wrote nothing, and left no folder
    else:
        listed = json.loads((cache.directory(encoder, paths, "pooled") / MANIFEST_NAME).read_text())["shards"]
        assert sorted(int(s) for s in listed) == list(range(7))  # the finished shards stay, to resume from

    features, valid = build()  # with room again: completes
    assert torch.equal(features[:], reference[:]) and valid.all()


def test_an_extraction_that_fails_is_one_line_and_leaves_no_partial_folder(tmp_path: Path) -> None:
    zip_path = tmp_path / "images.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("flickr30k-images/1.jpg", np.random.default_rng(0).bytes(150_000))
        archive.writestr("flickr30k-images/2.jpg", np.random.default_rng(1).bytes(150_000))
    target = tmp_path / "cache" / "hub" / "images"
    status, message = Forked(lambda: extract_once(zip_path, target), file_size_limit=100_000).result()
    assert status == "user_error" and "\n" not in message, message
    assert message.startswith(f"cannot write {target}: file too large (EFBIG); it needs about 300.0 kB")
    assert not target.exists() and [p.name for p in target.parent.iterdir()] == [".images.lock"]
    assert (extract_once(zip_path, target) / "flickr30k-images" / "2.jpg").stat().st_size == 150_000


@pytest.mark.parametrize("fails_at", ["image", "json"])
def test_a_shapes_set_that_cannot_be_written_is_one_line_and_removed(tmp_path: Path, fails_at: str) -> None:
    reference = generate_shapes(tmp_path / "reference", n_images=10, seed=0)
    largest_image = max(p.stat().st_size for p in (reference / "images").iterdir())
    json_bytes = (reference / "dataset_shapes.json").stat().st_size
    assert largest_image < json_bytes
    limit = 1000 if fails_at == "image" else (largest_image + json_bytes) // 2

    out = tmp_path / "shapes"
    status, message = Forked(lambda: generate_shapes(out, n_images=10, seed=0), file_size_limit=limit).result()
    assert status == "user_error" and "\n" not in message, message
    failed = "images/shape_" if fails_at == "image" else "dataset_shapes.json"
    assert message.startswith(f"cannot write {out}/{failed}") and "file too large (EFBIG)" in message
    assert "it needs about" in message or "it needs more than the 1.0 kB written" in message, message
    assert list((out / "images").iterdir()) == [] and [p.name for p in out.iterdir()] == ["images"]
