"""Compute frozen-encoder features once, store them on disk, and reuse them in every later epoch and run.

The vision encoder is frozen and deterministic (eval mode, no dropout), so the features of an image never
change as long as the encoder, its weights, the view and the image file stay the same. Running a ViT-B over
a dataset every epoch would cost far more than training the small bridge on top of it, so we run it once:

    cache = FeatureCache(Path(".data/features"))
    features, valid = cache.features(encoder, image_paths, view="pooled")   # [N, 768] float32, [N] bool
    batch = features[torch.tensor([3, 1, 4])]                                # [3, 768]: read from disk pages

How it works:

- **Key.** A SHA-256 hash of (encoder name, weights tag -- plus size and mtime when it is a local file --,
  view, output shape, and the list of (image path, file size, mtime)). Change any of these and the key
  changes, so the features are rebuilt in a new directory `root/<name>-<view>-<key prefix>/`. Old
  directories are never deleted automatically (another dataset split may still use them).
- **Shards.** Features are written every `shard_size` images to `shard_00000.safetensors`, ... with
  safetensors (https://huggingface.co/docs/safetensors): plain tensors, no pickle, so reading a cache can
  never run code. Each shard is written to a temporary file and then renamed with `os.replace`, which is
  atomic: a crash leaves either the whole shard or nothing.
- **Manifest.** `manifest.json` (also replaced atomically) records the key, shape, dtype, the finished shards with
  their size in bytes and CRC-32 checksum, the unreadable images and a `done` flag. An interrupted build resumes
  from the finished shards.
- **Checked before use.** Every time `features()` opens a cache it checks each shard against the manifest: the
  safetensors header (its tensors' shapes and the file length it implies), the size and the CRC-32 of the whole
  file. A shard that was truncated, damaged or deleted since it was written is reported in one line and rebuilt; it
  is never trained on. CRC-32 (as in zip, gzip and PNG) catches accidental damage, not tampering; it runs at about
  1.5 GB/s here (SHA-256: 0.6 GB/s), so checking Flickr30k's 9.6 GB of hidden states costs seconds per run.
- **One builder.** A build holds a file lock on its directory (`runtime/files.py` `file_lock`): of several processes
  sharing the cache folder (`python -m experiments --jobs 2`, two users, several machines on one network file
  system), one builds and the others wait, saying so, then read what it wrote. The kernel drops the lock of a
  killed process, so a lock never outlives its builder.
- **Write failures.** A shard or manifest that cannot be written (disk full, file-size limit, no permission, I/O
  error) ends the build with one line (`UserError`) naming the file and, for space, about how many bytes it needed.
  Nothing half-written stays: a shard whose manifest entry could not be written is removed again, and the finished
  shards before it are kept for the next run to resume from.
- **Bad images** (missing, corrupt, truncated, decompression bombs; see `data/images.py`) get all-zero features
  and `valid=False`; they are counted and logged, and the rest of the dataset is unaffected.
- **Storage dtype.** Pooled vectors are stored as float32; hidden states (hundreds of tokens per image) as
  float16, which halves the disk and memory cost. Note the size: ViT-B/16 hidden states take
  197 x 768 x 2 bytes = 0.3 MB per image, 9.6 GB for Flickr30k and about 36 GB for COCO train2017.
- **Reading.** `features()` returns a `MappedFeatures` (`vision/mapped.py`): the shards are memory-mapped, and
  indexing it with a batch's rows reads only those rows from disk pages into a new tensor, so the process holds
  a batch, not the dataset. `in_memory=True` returns one concatenated tensor instead (the whole set in RAM).
- **Workers.** `num_workers` DataLoader worker processes decode and resize the images while the main process runs
  the encoder (`--num-workers`); the features are the same with any number of workers.

Read next: `vision/mapped.py` (reading shards a batch at a time), `runtime/files.py` (the atomic write and the lock),
`docs/reliability.md` (shared, damaged and full caches).
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset

from data.images import BadImageError, decode_image
from errors import UserError
from runtime.files import file_lock, write_atomically
from vision.encoders import VisionEncoder, check_view
from vision.mapped import MappedFeatures, map_tensor

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the on-disk layout changes: old caches then get new keys
MANIFEST_NAME = "manifest.json"
STORAGE_DTYPES = {"pooled": torch.float32, "hidden": torch.float16}
SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bool: "BOOL"}
CHECKSUM_CHUNK = 16 << 20  # bytes read at a time while checksumming a shard


def file_crc32(path: Path) -> str:
    """The CRC-32 of a whole file, as 8 hex digits."""
    crc, buffer = 0, bytearray(CHECKSUM_CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buffer):
            crc = zlib.crc32(view[:n], crc)
    return f"{crc:08x}"


def shard_problem(path: Path, entry: dict[str, Any], feature_shape: Sequence[int], dtype: torch.dtype) -> str | None:
    """Why the shard file `path` is not the one its manifest `entry` describes, or None when it is.

    Checks, cheapest first: the file exists; its safetensors header parses and declares "features"
    [rows, *feature_shape] of `dtype` and "valid" [rows] bool, and a file length equal to the real one; the size and
    CRC-32 recorded when it was written (manifests written before checksums have neither: the header check stays).
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            (header_size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_size)) if header_size < size else None
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError, struct.error):
        return "unreadable safetensors header"
    if not isinstance(header, dict):
        return f"unreadable safetensors header ({size:,} bytes)"
    rows = entry["stop"] - entry["start"]
    expected = {"features": (SAFETENSORS_DTYPES[dtype], [rows, *feature_shape]), "valid": ("BOOL", [rows])}
    try:
        declared = {name: (header[name]["dtype"], header[name]["shape"]) for name in expected}
        end = 8 + header_size + max(header[name]["data_offsets"][1] for name in expected)
    except (KeyError, TypeError, IndexError):
        return "its safetensors header lacks the features or valid tensor"
    if declared != expected:
        return f"it holds {declared}, not {expected}"
    if "bytes" in entry and size != entry["bytes"]:
        return f"{size:,} bytes, not the {entry['bytes']:,} written"
    if size != end:
        return f"{size:,} bytes, not the {end:,} its header declares"
    if "crc32" in entry and (crc := file_crc32(path)) != entry["crc32"]:
        return f"CRC-32 {crc}, not the {entry['crc32']} written"
    return None


@dataclass
class _Shard:
    """Features of images [start, stop) being filled in memory before they are written."""

    start: int
    stop: int
    features: torch.Tensor  # [stop - start, *feature_shape]
    valid: torch.Tensor  # [stop - start] bool
    filled: int = 0
    invalid: list[dict[str, Any]] = field(default_factory=list)  # {"index", "path", "reason"} of bad images


class _ImageFiles(Dataset):
    """Loads and preprocesses the images at `indices`; a bad image yields zeros and its reason."""

    def __init__(self, paths: Sequence[Path], indices: Sequence[int], encoder: VisionEncoder) -> None:
        self.paths = paths
        self.indices = indices
        self.preprocess = encoder.preprocess
        self.image_size = encoder.image_size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, bool, str]:
        index = self.indices[i]
        try:
            pixels = self.preprocess(decode_image(self.paths[index]))  # [3, H, W]
            return index, pixels, True, ""
        except BadImageError as exc:
            return index, torch.zeros(3, self.image_size, self.image_size), False, str(exc)


class ImagesPerSecond(ProgressColumn):
    """A rich progress column: images per second, measured by rich over the last 30 seconds."""

    def __init__(self, unit: str = "img/s", digits: int = 1) -> None:
        super().__init__()
        self.unit, self.digits = unit, digits

    def render(self, task: Task) -> Text:
        rate = f"{task.speed:.{self.digits}f}" if task.speed else "-"
        return Text(f"{rate} {self.unit}", style="progress.data.speed")


def _read_text(path: Path) -> str | None:
    """The text of `path`, or None when it cannot be read (missing, unreadable)."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()  # fails unless empty
    except OSError:
        pass


def _file_fingerprint(path: Path) -> list[Any]:
    """[absolute path, size, mtime in ns]; a missing file gets size and mtime -1 (and will be a bad image)."""
    try:
        stat = path.stat()
        return [str(path.absolute()), stat.st_size, stat.st_mtime_ns]
    except OSError:
        return [str(path.absolute()), -1, -1]


class FeatureCache:
    """Features of a frozen encoder for a list of images, computed once and stored under `root`."""

    def __init__(self, root: Path | str, shard_size: int = 1024, progress: bool | None = None) -> None:
        """`progress`: show a rich progress bar; None = only when stderr is a terminal (or Jupyter)."""
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.root = Path(root)
        self.shard_size = shard_size
        self.progress = progress

    def key(self, encoder: VisionEncoder, image_paths: Sequence[Path], view: str) -> str:
        """The hash that names the features of (encoder, weights, view, image files)."""
        weights_path = Path(encoder.weights)
        material = {
            "format": FORMAT_VERSION,
            "encoder": encoder.name,
            "weights": encoder.weights,
            # A local weights file is named by its absolute path; its content may change under that name.
            "weights_file": _file_fingerprint(weights_path) if weights_path.is_absolute() else None,
            "view": view,
            "feature_shape": list(encoder.output_shape(view)),
            "image_size": encoder.image_size,
            "images": [_file_fingerprint(Path(p)) for p in image_paths],
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()

    def directory(self, encoder: VisionEncoder, image_paths: Sequence[Path], view: str) -> Path:
        """Where the features of this (encoder, weights, view, image files) live."""
        return self._directory(encoder, view, self.key(encoder, image_paths, view))

    def _directory(self, encoder: VisionEncoder, view: str, key: str) -> Path:
        return self.root / f"{encoder.name}-{view}-{key[:16]}"  # readable prefix + 64 bits of the key

    def features(
        self,
        encoder: VisionEncoder,
        image_paths: Sequence[Path],
        view: str,
        batch_size: int = 64,
        device: str | torch.device = "cpu",
        num_workers: int = 0,
        in_memory: bool = False,
    ) -> tuple[MappedFeatures | torch.Tensor, torch.Tensor]:
        """Features of `image_paths`, in order: ([N, *encoder.output_shape(view)], valid [N] bool).

        Computes only what is not on disk yet (all of it, the missing shards of an interrupted build, or
        nothing). The encoder is moved to `device` to compute them. Pooled features are float32, hidden
        states float16. They come back memory-mapped (`MappedFeatures`: index it to get tensors), or, with
        `in_memory=True`, as one tensor in RAM.
        """
        check_view(view)
        paths = [Path(p) for p in image_paths]
        feature_shape = encoder.output_shape(view)
        dtype = STORAGE_DTYPES[view]
        if not paths:
            empty = MappedFeatures([], self.shard_size, feature_shape, dtype)
            return empty[:] if in_memory else empty, torch.zeros(0, dtype=torch.bool)

        key = self.key(encoder, paths, view)
        directory = self._directory(encoder, view, key)
        manifest, text = self._read_manifest(directory, key)
        if manifest is not None and manifest["done"]:
            logger.info("using cached %s %s features from %s", encoder.name, view, directory)
        else:
            # One process builds (or completes, or repairs) the cache; the others wait here, then read its result.
            what = f"{encoder.name} {view} features of {len(paths):,} images"
            with file_lock(directory, what):
                if (directory / MANIFEST_NAME).is_file() and _read_text(directory / MANIFEST_NAME) != text:
                    manifest, _ = self._read_manifest(directory, key)  # written meanwhile by the lock's last holder
                manifest = manifest or self._new_manifest(encoder, key, view, len(paths), feature_shape, dtype)
                if manifest["done"]:
                    logger.info("using the %s another process just built in %s", what, directory)
                else:
                    directory.mkdir(parents=True, exist_ok=True)
                    try:
                        self._build(encoder, paths, view, manifest, directory, batch_size, device, num_workers)
                    except BaseException:
                        _remove_if_empty(directory)  # a build that wrote nothing leaves no folder
                        raise
        return self._load(manifest, directory) if in_memory else self._map(manifest, directory)

    def _new_manifest(
        self, encoder: VisionEncoder, key: str, view: str, num_images: int, feature_shape: tuple, dtype: torch.dtype
    ) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "key": key,
            "encoder": encoder.name,
            "weights": encoder.weights,
            "view": view,
            "num_images": num_images,
            "feature_shape": list(feature_shape),
            "dtype": str(dtype).removeprefix("torch."),
            "shard_size": self.shard_size,
            # shard index -> {"file", "start", "stop", "bytes", "crc32", "invalid": [{"index", "path", "reason"}]}
            "shards": {},
            "done": False,
        }

    def open(
        self, directory: Path | str, in_memory: bool = False
    ) -> tuple[MappedFeatures | torch.Tensor, torch.Tensor]:
        """The features of a finished build in `directory` (one of `root`'s), without an encoder or the images."""
        directory = Path(directory)
        try:
            manifest = json.loads((directory / MANIFEST_NAME).read_text())
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"{directory} holds no readable feature-cache manifest: {exc}") from exc
        if not manifest.get("done"):
            raise RuntimeError(f"the feature cache in {directory} is unfinished; `features()` completes it")
        if self._drop_damaged(manifest, directory):
            raise UserError(f"the feature cache in {directory} has damaged shards; `features()` rebuilds them")
        return self._load(manifest, directory) if in_memory else self._map(manifest, directory)

    def _read_manifest(self, directory: Path, key: str) -> tuple[dict[str, Any] | None, str | None]:
        """(the manifest of a build with this key and shard size, finished or not, or None; the manifest's text).

        Shards that fail their check (`shard_problem`) are reported and left out, so that they are built again.
        """
        text = _read_text(directory / MANIFEST_NAME)
        try:
            manifest = json.loads(text) if text is not None else None
        except ValueError:
            manifest = None
        if (
            not isinstance(manifest, dict)
            or manifest.get("key") != key
            or manifest.get("shard_size") != self.shard_size
        ):
            return None, text  # start over; shards are overwritten as they are rebuilt
        self._drop_damaged(manifest, directory)
        manifest["done"] = manifest["done"] and len(manifest["shards"]) == self._num_shards(manifest)
        return manifest, text

    def _drop_damaged(self, manifest: dict[str, Any], directory: Path) -> list[str]:
        """Check every shard the manifest lists; log and remove from `manifest` those that fail. Their file names."""
        feature_shape, dtype = manifest["feature_shape"], getattr(torch, manifest["dtype"])
        started, damaged = time.perf_counter(), []
        for index, entry in list(manifest["shards"].items()):
            problem = shard_problem(directory / entry["file"], entry, feature_shape, dtype)
            if problem is not None:
                logger.warning(
                    "feature cache shard %s is damaged (%s); rebuilding it", directory / entry["file"], problem
                )
                del manifest["shards"][index]
                damaged.append(entry["file"])
        logger.debug("checked %d shards in %.1f s", len(manifest["shards"]), time.perf_counter() - started)
        return damaged

    def _num_shards(self, manifest: dict[str, Any]) -> int:
        return -(-manifest["num_images"] // manifest["shard_size"])  # ceiling division

    def _build(
        self,
        encoder: VisionEncoder,
        paths: list[Path],
        view: str,
        manifest: dict[str, Any],
        directory: Path,
        batch_size: int,
        device: str | torch.device,
        num_workers: int,
    ) -> None:
        """Compute and write every shard the manifest does not list as finished."""
        size, n = self.shard_size, len(paths)
        todo = [
            i
            for s in range(self._num_shards(manifest))
            if str(s) not in manifest["shards"]
            for i in range(s * size, min((s + 1) * size, n))
        ]
        feature_shape, dtype = tuple(manifest["feature_shape"]), STORAGE_DTYPES[view]
        open_shards: dict[int, _Shard] = {}  # at most two: a batch can straddle a shard boundary

        encoder.to(device)
        loader = DataLoader(
            _ImageFiles(paths, todo, encoder),
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=torch.device(device).type == "cuda",
        )
        console = Console(stderr=True)
        show = self.progress if self.progress is not None else (console.is_terminal or console.is_jupyter)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        columns += (ImagesPerSecond(), TimeRemainingColumn())
        started, num_invalid = time.perf_counter(), 0
        with Progress(*columns, console=console, disable=not show) as progress:
            task = progress.add_task(f"{encoder.name} {view} features", total=len(todo))
            for indices, pixels, ok, reasons in loader:  # [b], [b, 3, H, W], [b], b strings
                # Run the encoder on the readable images only; the others keep zero features.
                batch = torch.zeros(len(indices), *feature_shape, dtype=dtype)  # [b, *feature_shape]
                if ok.any():
                    batch[ok] = encoder(pixels[ok].to(device, non_blocking=True), view=view).cpu().to(dtype)
                for row, index in enumerate(indices.tolist()):
                    s = index // size
                    if s not in open_shards:
                        stop = min((s + 1) * size, n)
                        open_shards[s] = _Shard(
                            start=s * size,
                            stop=stop,
                            features=torch.zeros(stop - s * size, *feature_shape, dtype=dtype),
                            valid=torch.zeros(stop - s * size, dtype=torch.bool),
                        )
                    shard = open_shards[s]
                    shard.features[index - shard.start] = batch[row]
                    shard.valid[index - shard.start] = ok[row]
                    shard.filled += 1
                    if not ok[row]:
                        num_invalid += 1
                        shard.invalid.append({"index": index, "path": str(paths[index]), "reason": reasons[row]})
                    if shard.filled == shard.stop - shard.start:
                        self._write_shard(s, open_shards.pop(s), manifest, directory)
                progress.advance(task, len(indices))

        manifest["done"] = True
        self._write_manifest(manifest, directory)
        elapsed = time.perf_counter() - started
        logger.info("computed %d %s %s features in %.1f s -> %s", len(todo), encoder.name, view, elapsed, directory)
        if num_invalid:
            logger.warning(
                "%d of %d images could not be read and got zero features (valid=False); list in %s",
                num_invalid,
                len(todo),
                directory / MANIFEST_NAME,
            )

    def _write_shard(self, s: int, shard: _Shard, manifest: dict[str, Any], directory: Path) -> None:
        """Write one finished shard, then record it in the manifest (in that order, each atomically)."""
        name = f"shard_{s:05d}.safetensors"
        tensors = {"features": shard.features.contiguous(), "valid": shard.valid}
        written: dict[str, Any] = {}

        def write(tmp: Path) -> None:
            save_file(tensors, str(tmp))
            written.update(bytes=tmp.stat().st_size, crc32=file_crc32(tmp))  # of the bytes on disk

        size = sum(t.nbytes for t in tensors.values()) + 256  # the data and about the header
        write_atomically(directory / name, write, size=size)
        manifest["shards"][str(s)] = {"file": name, "start": shard.start, "stop": shard.stop, **written}
        manifest["shards"][str(s)]["invalid"] = shard.invalid
        try:
            self._write_manifest(manifest, directory)
        except BaseException:
            # Not listed, the shard would be an orphan (and is rebuilt on resume anyway): remove it.
            del manifest["shards"][str(s)]
            (directory / name).unlink(missing_ok=True)
            raise

    def _write_manifest(self, manifest: dict[str, Any], directory: Path) -> None:
        data = json.dumps(manifest, indent=1).encode()
        write_atomically(directory / MANIFEST_NAME, lambda tmp: tmp.write_bytes(data), size=len(data))

    def _shard_files(self, manifest: dict[str, Any], directory: Path) -> list[Path]:
        return [directory / manifest["shards"][str(s)]["file"] for s in range(self._num_shards(manifest))]

    def _map(self, manifest: dict[str, Any], directory: Path) -> tuple[MappedFeatures, torch.Tensor]:
        """Memory-map the shards in order: (MappedFeatures [N, *feature_shape], [N] bool in RAM)."""
        files = self._shard_files(manifest, directory)
        dtype = getattr(torch, manifest["dtype"])
        try:
            features = MappedFeatures.open(files, manifest["shard_size"], manifest["feature_shape"], dtype)
            valid = torch.from_numpy(np.concatenate([map_tensor(f, "valid") for f in files]))  # [N], a copy
        except (OSError, ValueError, KeyError) as exc:
            raise RuntimeError(f"feature cache {directory} is inconsistent: {exc}") from exc
        if len(features) != manifest["num_images"] or valid.shape != (manifest["num_images"],):
            raise RuntimeError(f"feature cache {directory} is inconsistent: {len(features)} rows, not {len(valid)}")
        return features, valid

    def _load(self, manifest: dict[str, Any], directory: Path) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenate the shards in order, in RAM: ([N, *feature_shape], [N] bool)."""
        loaded = [load_file(str(path)) for path in self._shard_files(manifest, directory)]
        features = torch.cat([t["features"] for t in loaded])  # [N, *feature_shape]
        valid = torch.cat([t["valid"] for t in loaded])  # [N]
        expected = (manifest["num_images"], *manifest["feature_shape"])
        if tuple(features.shape) != expected or valid.shape != (manifest["num_images"],):
            raise RuntimeError(f"feature cache {directory} is inconsistent: {tuple(features.shape)} != {expected}")
        return features, valid
