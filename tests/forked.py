"""Run a function in a forked child process and get its result back: for tests of locks, kills and write limits.

A fork shares the test's imports and objects (no 10-second re-import of torch and timm per child), and a closure works
as a target. The child sets one torch thread, as DataLoader workers do, because the parent's thread pool does not
survive a fork.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from errors import UserError

FORK = multiprocessing.get_context("fork")


def _child(queue: Any, fn: Callable[[], Any], file_size_limit: int | None) -> None:
    torch.set_num_threads(1)
    if file_size_limit is not None:
        # A file-size limit stands in for a full disk; ignoring SIGXFSZ turns the kill into EFBIG for the write.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        queue.put(("ok", fn()))
    except UserError as exc:
        queue.put(("user_error", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        queue.put(("error", repr(exc)))


class Forked:
    """`fn()` running in a forked child; `.result()` waits for ("ok" | "user_error" | "error", value)."""

    def __init__(self, fn: Callable[[], Any], file_size_limit: int | None = None, daemon: bool = True) -> None:
        """`daemon=False` lets the child start processes of its own (DataLoader workers); a daemon child cannot."""
        self.queue = FORK.Queue()
        self.process = FORK.Process(target=_child, args=(self.queue, fn, file_size_limit), daemon=daemon)
        self.process.start()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def result(self, timeout: float = 120) -> tuple[str, Any]:
        outcome = self.queue.get(timeout=timeout)
        self.process.join(timeout=10)
        return outcome

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.process.join(timeout=10)
        assert self.process.exitcode == -signal.SIGKILL


def wait_for(path: Path, timeout: float = 60) -> None:
    """Wait until `path` exists (a child's signal that it reached a point)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)
