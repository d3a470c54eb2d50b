"""Files that are complete or absent, write errors in one line, and one builder per cache entry.

Three tools every checkpoint, cache shard, dataset extraction and metrics file uses:

- `write_atomically(path, write, size=...)`: `write(tmp)` fills a temporary file in `path`'s directory, which is
  flushed to disk (`os.fsync`) and renamed over `path`. `os.replace` is atomic on POSIX (and on Windows): a reader
  sees the old file or the new one, never a half-written one; a crash mid-write leaves the old file untouched and, at
  worst, a `.NAME.*.tmp` file that the next write does not reuse. The fsync comes before the rename so that a write
  error the kernel reports late (EIO, a quota on a network file system) is raised here, while the file is still
  temporary, and so that a power cut cannot leave a renamed file whose blocks never reached the disk.
- `describe_write_error(path, error, needed)`: the `UserError` for a write that failed because of the machine, not
  the program: a full disk (ENOSPC, EDQUOT), a file-size limit (EFBIG), no permission (EACCES, EPERM, EROFS) or a
  failing disk (EIO). One line naming the file and the error and, for space, about how many bytes were needed and
  how many are free. `write_atomically` raises it itself, after removing its temporary file.
- `file_lock(path, what)`: an exclusive lock on one cache entry (a feature-cache directory, an extracted dataset),
  held while it is built, so that of several processes sharing a cache folder (`python -m experiments --jobs 2`, two
  users, several machines on one network file system) one builds and the others wait, saying so, then read.

Libraries that write through their own code hide the errno: safetensors raises `SafetensorError("... File too large
(os error 27)")` and `torch.save` to a path raises `RuntimeError("[enforce fail at inline_container.cc:672] ...")`.
`os_error_of` recovers it (from the exception chain, from Rust's "(os error N)", or, for `torch.save(obj, path)`, by
looking at the file-size limit and the free space), so the user still gets the one line. `torch.save(obj, f)` into
an open file keeps the `OSError` in the chain: prefer it.

Read next: `vision/cache.py` (feature shards, a manifest with checksums, one build per cache entry),
`data/flickr30k.py` (`extract_once`), `docs/reliability.md` (what happens on a full disk or with a shared cache).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from errors import UserError

try:
    import resource  # Unix only: the file-size limit
except ImportError:  # pragma: no cover (Windows)
    resource = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

# What each errno a write can meet through no fault of the program means, in the words of the one-line error.
WRITE_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.EIO: "input/output error (a failing disk, or a network file system that went away)",
}
SPACE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how Rust's std::io::Error prints an errno (safetensors)


def human_bytes(n: float) -> str:
    """1234567 -> "1.2 MB" (decimal units, as disk sizes are quoted)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _free_bytes(path: Path) -> int | None:
    """Free bytes for this user on the file system holding `path` (or its nearest existing parent)."""
    for folder in (path, *path.parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return None


def _file_size_limit() -> int | None:
    """This process's file-size limit (RLIMIT_FSIZE, `ulimit -f`) in bytes, or None when there is none."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def describe_write_error(
    path: str | Path, error: OSError, needed: int | None = None, written: int | None = None
) -> UserError:
    """The one-line `UserError` for a failed write of `path` (raise it `from error`).

    `needed`: about how many bytes the file needs, when the writer knows; `written`: how many it had written when it
    failed (a lower bound when `needed` is unknown). For ENOSPC, EDQUOT and EFBIG the line says how much was needed
    and how much room there is; for the others, what the error means.
    """
    path = Path(path)
    code = error.errno
    name = errno.errorcode.get(code, str(code)) if code is not None else "OSError"
    meaning = WRITE_ERRORS.get(code) or error.strerror or str(error)
    line = f"cannot write {path}: {meaning} ({name})"
    if code in SPACE_ERRORS:
        if needed:
            line += f"; it needs about {human_bytes(needed)}"
        elif written:
            line += f"; it needs more than the {human_bytes(written)} written when it failed"
        if code == errno.EFBIG:
            limit = _file_size_limit()
            line += (
                f", and this process's files are limited to {human_bytes(limit)} (ulimit -f); raise the limit"
                if limit is not None
                else ", more than this file system allows in one file; choose another folder"
            )
        elif (free := _free_bytes(path.parent)) is not None:
            line += f", and {human_bytes(free)} are free there; free some space or choose another folder"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        line += f"; choose a folder you can write to, or ask for write access to {path.parent}"
    elif code == errno.EIO:
        line += "; check the disk (dmesg) and try again"
    return UserError(line)


def os_error_of(exc: BaseException, tmp: Path | None = None) -> OSError | None:
    """The `OSError` (with an errno) behind `exc`, or None when it is not a write error of the machine.

    Looks through the exception chain, then for Rust's "(os error N)" in the messages. Failing those, for a
    `RuntimeError` (what `torch.save(obj, path)` raises) and when the failed write's file `tmp` is given, checks the
    two limits a library may hide: the file reached the file-size limit (EFBIG), or the file system is full (ENOSPC).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            return current
        if match := _RUST_OS_ERROR.search(str(current)):
            code = int(match[1])
            return OSError(code, os.strerror(code))
        current = current.__cause__ or current.__context__
    if tmp is not None and isinstance(exc, RuntimeError):
        try:
            size = tmp.stat().st_size
        except OSError:
            return None
        limit = _file_size_limit()
        if limit is not None and size >= limit:
            return OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        free = _free_bytes(tmp.parent)
        if free is not None and free < 1 << 20:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


def new_file_mode() -> int:
    """The permissions `open(path, "w")` would give a new file: 0o666 less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomically(path: str | Path, write: Callable[[Path], object], *, size: int | None = None) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, flush it to disk, then rename it to `path`.

    `size`: about how many bytes the file will take, for the error message when the disk is full. A write the
    machine refuses (see `WRITE_ERRORS`) raises the one-line `UserError` of `describe_write_error`; any other
    exception from `write` propagates. Either way the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as err:
        if err.errno in WRITE_ERRORS:
            raise describe_write_error(path, err, size) from err
        raise
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, new_file_mode())  # mkstemp's 0o600 would hide checkpoints from the machine's other users
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except Exception as exc:
        error = os_error_of(exc, tmp)
        if error is None or error.errno not in WRITE_ERRORS:
            raise
        written = tmp.stat().st_size if tmp.exists() else None
        raise describe_write_error(path, error, size, written) from exc
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            logger.warning("could not remove the temporary file %s", tmp)


def write_text_atomically(path: str | Path, text: str) -> None:
    data = text.encode()
    write_atomically(path, lambda p: p.write_bytes(data), size=len(data))


def lock_path(path: str | Path) -> Path:
    """The lock file of the cache entry `path`: `.NAME.lock` beside it.

    It stays there, empty, after use: deleting it on release would let a process that opened it just before the
    deletion lock the deleted file while a newcomer locks a new one under the same name, two builders at once.
    """
    path = Path(path)
    return path.parent / f".{path.name}.lock"


@contextmanager
def file_lock(path: str | Path, what: str) -> Iterator[None]:
    """Hold the exclusive lock of the cache entry `path` (built or not) while the block runs.

    `what` names the entry for the line logged when another process holds the lock, e.g. "tiny pooled features
    of 5 images". Waits as long as the holder lives: a build can take hours. The lock is `filelock`'s, an
    `flock(2)` on `lock_path(path)`, which the kernel releases when the holding process ends in any way, SIGKILL
    included, so a lock left by a killed process never blocks. Re-check the entry after entering: the process
    that held the lock may have built it.
    """
    path = Path(path)
    lock_file = lock_path(path)
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_file))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            logger.warning("another process is building %s in %s; waiting for it (lock %s)", what, path, lock_file)
            lock.acquire()
            logger.info("the other process finished %s; going on", what)
    except OSError as err:
        if err.errno in WRITE_ERRORS:
            raise describe_write_error(lock_file, err) from err
        raise
    try:
        yield
    finally:
        lock.release()


def build_folder_once(target: Path, what: str, fill: Callable[[Path], object], needed: int | None = None) -> Path:
    """Make the folder `target` with `fill(folder)` unless it exists: atomically, and by one process at a time.

    `fill` writes into a temporary sibling folder, which is renamed to `target` at the end: a rename is atomic, so
    `target` exists only once complete, and an interrupted build (a leftover `.partial-*` folder) is removed and
    redone on the next run. The build holds `target`'s file lock (`file_lock`, naming `what` to those who wait), so
    of several processes sharing the cache one builds and the others wait for it (and never remove its partial
    folder). A write the machine refuses (disk full, file-size limit, no permission) is one `UserError` line with
    `needed`, the bytes the whole build takes when known, and leaves no partial folder. Used for the extracted
    Flickr30k zip (`data/flickr30k.py`) and a Parquet repo's images (`data/parquet.py`).
    """
    target = Path(target)
    if target.is_dir():
        return target
    with file_lock(target, what):
        if target.is_dir():  # built by the process that held the lock before us
            return target
        partial = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            for leftover in target.parent.glob(f"{target.name}.partial-*"):
                shutil.rmtree(leftover, ignore_errors=True)
            partial = Path(tempfile.mkdtemp(prefix=f"{target.name}.partial-", dir=target.parent))
            fill(partial)
            os.rename(partial, target)
        except OSError as err:
            if err.errno in WRITE_ERRORS:
                raise describe_write_error(target, err, needed) from err
            raise
        finally:
            if partial is not None:
                shutil.rmtree(partial, ignore_errors=True)  # nothing left to remove after a successful rename
    return target
