"""Cached features read from disk pages, a batch at a time, instead of from one tensor held in RAM.

ViT-B/16 hidden states of Flickr30k take 31,783 x 197 x 768 x 2 bytes = 9.6 GB in float16; COCO's would take
36 GB. Loading them all into the process (as `torch.cat` of every shard) costs that much memory before the first
step, and twice as much while the shards are concatenated. Training needs only a batch at a time:

    features = MappedFeatures.open([shard_00000.safetensors, ...], rows_per_shard=1024)
    batch = features[torch.tensor([17, 4051, 9])]      # [3, 197, 768]: a new in-RAM tensor of those rows only
    len(features), features.shape, features.dtype       # like a tensor's
    features[a:b], features[[1, 2]], features[mask]     # slices, lists, LongTensors, bool masks: copies, like torch

How it works. A safetensors file is an 8-byte little-endian length N, N bytes of JSON (for every tensor: its dtype,
shape and `data_offsets`, relative to the end of the header), then the raw bytes of the tensors. `np.memmap` maps
the bytes of each shard's "features" tensor into the address space without reading them; indexing copies only the
requested rows into a new array. The kernel reads those pages from disk on first touch and keeps them in its page
cache, where they count as the process's *file-backed* resident memory (`RssFile` in /proc/self/status): clean
pages that the kernel drops whenever another program needs the memory, and that every process mapping the same
file shares. The process's own memory (`RssAnon`) holds only the batches. `bench/feature_cache.py` measures both.

We map the bytes ourselves rather than call safetensors' `safe_open(...).get_slice(...)`, which also memory-maps
the file: indexing a NumPy map with a list of rows is one vectorised copy (1.9 ms for 32 random rows of a
1,024-image shard of ViT-B/16 hidden states on this project's 2-core CPU, against 7.0 ms for `get_slice` with the
same list), and it needs nothing beyond the documented file format.

References:
- safetensors format: https://github.com/huggingface/safetensors#format
- numpy.memmap: https://numpy.org/doc/stable/reference/generated/numpy.memmap.html
- /proc/[pid]/status (RssAnon, RssFile): https://man7.org/linux/man-pages/man5/proc.5.html

Read next: `training/loop.py` (where features are indexed a batch at a time), `evaluation/evaluate.py`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

# safetensors dtype names -> NumPy dtypes (those the feature cache writes: float32, float16, and bool for `valid`).
NUMPY_DTYPES = {"F32": np.float32, "F16": np.float16, "BOOL": np.bool_}


def map_tensor(path: Path | str, name: str) -> np.ndarray:
    """A read-only memory map of tensor `name` in the safetensors file `path` (nothing is read yet)."""
    path = Path(path)
    with path.open("rb") as f:
        (header_size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_size))
    if name not in header:
        raise ValueError(f"{path} has no tensor {name!r}")
    entry = header[name]
    if entry["dtype"] not in NUMPY_DTYPES:
        raise ValueError(f"{path}: tensor {name!r} has dtype {entry['dtype']}; expected one of {list(NUMPY_DTYPES)}")
    dtype, shape = np.dtype(NUMPY_DTYPES[entry["dtype"]]), tuple(entry["shape"])
    start, stop = entry["data_offsets"]
    if stop - start != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"{path}: tensor {name!r} has {stop - start} bytes, not the {shape} x {dtype} it declares")
    if stop == start:  # an empty tensor: mmap cannot map zero bytes
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=8 + header_size + start, shape=shape)


class MappedFeatures:
    """[N, *feature_shape] features spread over shard files of `rows_per_shard` rows each (the last may be shorter).

    Indexing returns a new in-RAM torch tensor holding just the requested rows, as indexing a tensor with a list
    or a LongTensor would; a slice is copied too (a view into the map would keep file pages alive and be
    read-only).
    """

    def __init__(
        self,
        shards: Sequence[np.ndarray],
        rows_per_shard: int,
        feature_shape: Sequence[int],
        dtype: torch.dtype,
    ) -> None:
        self._shards = list(shards)
        self._rows = rows_per_shard
        self._np_dtype = np.dtype({torch.float32: np.float32, torch.float16: np.float16}[dtype])
        for s, shard in enumerate(self._shards):
            full = s < len(self._shards) - 1
            if tuple(shard.shape[1:]) != tuple(feature_shape) or shard.dtype != self._np_dtype:
                raise ValueError(f"shard {s} is {shard.dtype} {tuple(shard.shape)}, not {dtype} [*, *{feature_shape}]")
            if (full and len(shard) != rows_per_shard) or not 0 < len(shard) <= rows_per_shard:
                raise ValueError(
                    f"shard {s} has {len(shard)} rows; every shard but the last must have {rows_per_shard}"
                )
        self.shape = torch.Size((sum(len(s) for s in self._shards), *feature_shape))
        self.dtype = dtype

    @classmethod
    def open(
        cls, files: Sequence[Path | str], rows_per_shard: int, feature_shape: Sequence[int], dtype: torch.dtype
    ) -> MappedFeatures:
        """Map the "features" tensor of each safetensors file, in order."""
        return cls([map_tensor(f, "features") for f in files], rows_per_shard, feature_shape, dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"MappedFeatures(shape={tuple(self.shape)}, dtype={self.dtype}, shards={len(self._shards)})"

    def __getitem__(self, key: Any) -> torch.Tensor:
        rows, single = self._rows_of(key)
        out = np.empty((len(rows), *self.shape[1:]), dtype=self._np_dtype)
        shard_of = rows // self._rows
        for s in np.unique(shard_of):  # one vectorised copy per shard that holds some of the rows
            at = np.flatnonzero(shard_of == s)
            out[at] = self._shards[s][rows[at] - s * self._rows]
        features = torch.from_numpy(out)
        return features[0] if single else features

    def tensor(self) -> torch.Tensor:
        """All the features as one in-RAM tensor (for small sets, e.g. pooled vectors of an evaluation split)."""
        return self[:]

    def _rows_of(self, key: Any) -> tuple[np.ndarray, bool]:
        """`key` as an int64 array of non-negative row numbers, and whether it named a single row."""
        n = len(self)
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        if isinstance(key, (int, np.integer)) or (isinstance(key, np.ndarray) and key.ndim == 0):
            rows, single = np.array([int(key)], dtype=np.int64), True
        elif isinstance(key, slice):
            rows, single = np.arange(*key.indices(n), dtype=np.int64), False
        elif isinstance(key, (np.ndarray, list, tuple, range)):
            array = np.asarray(key)
            if array.dtype == np.bool_:  # a mask over all rows, as `tensor[mask]`
                if array.shape != (n,):
                    raise IndexError(f"a boolean mask of shape {array.shape} cannot index {n} rows")
                array = np.flatnonzero(array)
            elif array.size == 0:
                array = array.astype(np.int64)
            elif not np.issubdtype(array.dtype, np.integer) or array.ndim != 1:
                raise IndexError(f"index rows with one dimension of integers, not {array.dtype} {array.shape}")
            rows, single = array.astype(np.int64), False
        else:
            raise TypeError(f"MappedFeatures cannot be indexed with {type(key).__name__}")
        if rows.size and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        return np.where(rows < 0, rows + n, rows), single
