"""Files that are complete or absent: the one atomic write every checkpoint, cache shard and metrics file uses.

A file is written under a temporary name in its own directory and then renamed over its final name. `os.replace` is
atomic on POSIX (and on Windows): a reader sees the old file or the new one, never a half-written one, and a crash
mid-write leaves the old file untouched and, at worst, a `.NAME.*.tmp` file that the next write does not reuse.

Read next: `checkpoints/store.py` (a checkpoint is several such files), `vision/cache.py` (feature shards).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it to `path` (the temporary file is removed
    when `write` fails)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomically(path: str | Path, text: str) -> None:
    write_atomically(path, lambda p: p.write_text(text))
