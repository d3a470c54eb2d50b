"""Running a command as a user would, and measuring it: exit status, seconds, and peak resident memory.

Each command runs in its own process, with its output in a log file. Its memory is sampled from `/proc` every
`SAMPLE_SECONDS` while it runs (`MemorySampler`): the command's process and every process it started, found by
their parent ids (torchrun starts its workers in sessions of their own), each one's `VmHWM` (the peak resident set
of the process since it started its program) and the sum of their `VmRSS`. So a command's peak is known per process
(for `torchrun`: the largest of the launcher and its workers, what one GPU's process needs) and for all its
processes together. A command that runs past its timeout is stopped with all its processes.

Why not `ru_maxrss` from `os.wait4`: on Linux a child starts as a copy of its parent, and the kernel keeps that
copy's peak in the child's `ru_maxrss` across `exec`, so every command would report at least the rehearsal's own
peak. (`ru_maxrss` is the fallback where there is no `/proc`.) What sampling can miss is growth in the last
`SAMPLE_SECONDS` before a process exits.

Resident memory counts what a process touched: its heap, and the pages of files it mapped and read (a safetensors
file being loaded is one), including shared pages, which the sum over processes counts once per process.

Read next: `rehearse/checks.py` (what the rehearsal asserts about the runs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

KIB = 1024
SAMPLE_SECONDS = 0.2
PROC = Path("/proc")


@dataclass(frozen=True)
class Finished:
    """A command that ran: how it ended, how long it took, its peak memory and where its output is."""

    name: str
    argv: list[str]
    status: int  # the exit status; -N for a process killed by signal N
    seconds: float
    peak_rss: int  # bytes: the largest peak of any one of its processes
    total_rss: int  # bytes: the largest sum over its processes at one time
    log: Path
    timed_out: bool = False

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def process_tree(root: int) -> list[int]:
    """`root` and every process it started, directly or not, that is still running (from the parent ids in /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            try:
                stat = (PROC / entry.name / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])  # the fields after "pid (comm) ": state, ppid
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def memory_of(pid: int) -> tuple[int, int]:
    """(peak, current) resident bytes of a process: `VmHWM` and `VmRSS`; (0, 0) when it is gone."""
    try:
        status = dict(line.split(":", 1) for line in (PROC / str(pid) / "status").read_text().splitlines())
        return int(status["VmHWM"].split()[0]) * KIB, int(status["VmRSS"].split()[0]) * KIB
    except (OSError, ValueError, KeyError):  # gone meanwhile, or no memory of its own
        return 0, 0


class MemorySampler(threading.Thread):
    """Samples the process tree of `root` every `SAMPLE_SECONDS` until `stop()`."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.process_peak = 0  # bytes
        self.total_peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(SAMPLE_SECONDS):
            memory = [memory_of(pid) for pid in process_tree(self.root)]
            self.process_peak = max([self.process_peak, *(peak for peak, _ in memory)])
            self.total_peak = max(self.total_peak, sum(now for _, now in memory))

    def stop(self) -> None:
        self._done.set()
        self.join()


def run(name: str, argv: list[str], *, env: dict[str, str], cwd: Path, logs: Path, timeout: float) -> Finished:
    """Run `argv`, its stdout and stderr into `logs/{name}.log`; stop it (and all it started) after `timeout` s."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("w") as out:
        out.write("$ " + " ".join(argv) + "\n\n")
        out.flush()
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        sampler = MemorySampler(process.pid)
        expired = threading.Event()
        timer = threading.Timer(timeout, _stop_tree, args=(process.pid, expired))
        sampler.start()
        timer.start()
        try:
            _, wait_status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
            sampler.stop()
        process.returncode = os.waitstatus_to_exitcode(wait_status)  # reaped here; Popen must not wait again
        seconds = time.perf_counter() - started
    if PROC.is_dir():
        peak, total = sampler.process_peak, sampler.total_peak
    else:  # no /proc (macOS): the kernel's figure, which includes the rehearsal's own peak (see the docstring)
        peak = total = usage.ru_maxrss * (1 if sys.platform == "darwin" else KIB)
    return Finished(name, argv, process.returncode, seconds, peak, total, log, timed_out=expired.is_set())


def _stop_tree(pid: int, expired: threading.Event) -> None:
    """SIGKILL the command and every process it started (the ones this rehearsal started, by their ids), the command
    first, so that it cannot go on when it sees a child die."""
    expired.set()
    for member in process_tree(pid) if PROC.is_dir() else [pid]:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def command_environment(hf_home: Path, repo: Path) -> dict[str, str]:
    """This environment for the commands, pointed at the rehearsal's hub cache, offline, and without credentials:
    HF_HOME (and HF_HUB_CACHE under it), HF_HUB_OFFLINE=1, no HF_TOKEN or W&B key, PYTHONPATH=the repository."""
    drop = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE",
            "WANDB_API_KEY", "WANDB_MODE", "OUTPUT_DIR_MODELS")  # fmt: skip
    env = {key: value for key, value in os.environ.items() if key not in drop}
    env |= {
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
        "PYTHONPATH": str(repo),
        "PYTHONUNBUFFERED": "1",
    }
    return env
