"""Tests for `runtime/files.py`: the atomic write, write errors as one line, and the lock of a cache entry.

A full disk is simulated two ways: a `write` that raises the errno (ENOSPC, EACCES, ... cannot be caused for real
without root or a small file system), and a forked child under a file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored
so that the write fails with EFBIG), which makes real libraries fail where they would on a full disk.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock, Timeout
from forked import Forked, wait_for
from safetensors.torch import save_file

from errors import UserError
from runtime.files import describe_write_error, file_lock, lock_path, os_error_of, write_atomically


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text("old")

    def half_then_bug(tmp: Path) -> None:
        tmp.write_text("half")
        raise ValueError("a bug, not the machine")

    with pytest.raises(ValueError, match="a bug"):  # not a write error: it propagates as it is
        write_atomically(path, half_then_bug)
    assert path.read_text() == "old" and _leftovers(tmp_path) == []
    write_atomically(path, lambda tmp: tmp.write_text("new"))
    assert path.read_text() == "new" and _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, ["no space left on the device (ENOSPC)", "it needs about 12.3 kB", "free there"]),
        (errno.EDQUOT, ["disk quota exceeded (EDQUOT)", "it needs about 12.3 kB"]),
        (errno.EACCES, ["permission denied (EACCES)", "write access to"]),
        (errno.EROFS, ["read-only file system (EROFS)"]),
        (errno.EIO, ["input/output error", "(EIO)", "check the disk"]),
    ],
)
def test_write_errors_of_the_machine_are_one_line(tmp_path: Path, code: int, words: list[str]) -> None:
    path = tmp_path / "shard_00003.safetensors"
    path.write_bytes(b"the previous complete file")

    def fails(tmp: Path) -> None:
        tmp.write_bytes(b"x" * 100)
        raise OSError(code, "simulated")

    with pytest.raises(UserError) as caught:
        write_atomically(path, fails, size=12_345)
    message = str(caught.value)
    assert message.startswith(f"cannot write {path}: ") and "\n" not in message
    assert all(w in message for w in words), message
    assert path.read_bytes() == b"the previous complete file" and _leftovers(tmp_path) == []


def test_without_a_size_a_full_disk_reports_what_was_written(tmp_path: Path) -> None:
    message = str(describe_write_error(tmp_path / "f", OSError(errno.ENOSPC, "no space"), written=5_000_000))
    assert "more than the 5.0 MB written when it failed" in message


def test_errnos_hidden_by_libraries_are_recovered(tmp_path: Path) -> None:
    # safetensors (Rust) prints the errno in its message; torch.save into an open file chains the OSError.
    rust = Exception("Error while serializing: I/O error: File too large (os error 27)")
    assert os_error_of(rust).errno == errno.EFBIG
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None
    except RuntimeError as chained:
        assert os_error_of(chained).errno == errno.ENOSPC
    assert os_error_of(ValueError("unrelated")) is None


def test_a_file_size_limit_is_one_line_for_safetensors_torch_save_and_text(tmp_path: Path) -> None:
    # Under a 64 kB file-size limit each write fails for real, inside the library that writes.
    tensors = {"features": torch.zeros(50_000)}  # 200 kB

    def writes() -> list[str]:
        messages = []
        for name, write in [
            ("shard.safetensors", lambda tmp: save_file(tensors, str(tmp))),  # SafetensorError "(os error 27)"
            ("state.pt", lambda tmp: torch.save(tensors, tmp)),  # RuntimeError, no errno at all: found by probing
            ("metrics.json", lambda tmp: tmp.write_text("x" * 100_000)),  # a plain OSError
        ]:
            try:
                write_atomically(tmp_path / name, write, size=200_000)
            except UserError as exc:
                messages.append(str(exc))
        return messages

    status, messages = Forked(writes, file_size_limit=64_000).result()
    assert status == "ok" and len(messages) == 3, messages
    for name, message in zip(["shard.safetensors", "state.pt", "metrics.json"], messages, strict=True):
        assert message.startswith(f"cannot write {tmp_path / name}: file too large (EFBIG)"), message
        assert "it needs about 200.0 kB" in message and "limited to 64.0 kB (ulimit -f)" in message, message
        assert "\n" not in message
    assert list(tmp_path.iterdir()) == []  # nothing half-written, no temporary file


def test_a_lock_held_by_a_killed_process_is_released(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    entry = tmp_path / "features" / "tiny-pooled-0123"
    ready = tmp_path / "holding"

    def hold_forever() -> None:
        with file_lock(entry, "tiny pooled features"):
            ready.touch()
            time.sleep(600)

    holder = Forked(hold_forever)
    wait_for(ready)
    with pytest.raises(Timeout):  # really held
        FileLock(str(lock_path(entry))).acquire(timeout=0.1)
    holder.kill()  # SIGKILL: no `finally`, no release by the process itself

    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="runtime.files"), file_lock(entry, "tiny pooled features"):
        assert time.monotonic() - started < 5
    assert "another process is building" not in caplog.text  # the kernel released it with the process


def test_a_waiting_process_says_so_then_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    entry, ready = tmp_path / "shapes-seed0-n20", tmp_path / "holding"

    def hold_briefly() -> None:
        with file_lock(entry, "the shapes set"):
            ready.touch()
            time.sleep(1.0)

    holder = Forked(hold_briefly)
    wait_for(ready)
    with caplog.at_level(logging.INFO, logger="runtime.files"), file_lock(entry, "the shapes set"):
        assert holder.result() == ("ok", None)  # the holder had finished when we got the lock
    assert f"another process is building the shapes set in {entry}; waiting for it" in caplog.text


def test_atomic_writes_get_the_permissions_of_a_plain_write(tmp_path):
    """A checkpoint or metrics file is readable by whom the umask allows, as `open(path, "w")` would make it (not the
    0o600 of the temporary file it was written under)."""
    import stat

    from runtime.files import write_text_atomically

    old = os.umask(0o022)
    try:
        write_text_atomically(tmp_path / "metrics.json", "{}")
        (tmp_path / "plain.json").write_text("{}")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o644
