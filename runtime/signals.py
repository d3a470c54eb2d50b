"""Stop a training run cleanly on a signal: SIGTERM (every scheduler), SIGUSR1 (SLURM's `--signal=USR1@90`), Ctrl-C.

A scheduler that takes the machine back (SLURM preemption, a Kubernetes pod eviction, a spot instance going away)
sends SIGTERM and kills the process a grace period later (SLURM's GraceTime, Kubernetes' 30 s); `sbatch
--signal=USR1@90` sends SIGUSR1 90 seconds before the job's time limit. Python's default for either is to die on
the spot, losing everything since the last checkpoint. `StopSignals` turns them into a request that the training loop
reads between optimizer steps:

    with StopSignals() as stop:                 # installs the handlers; the previous ones are back on leaving
        for batch in batches:
            train_step(batch)                   # never cut in half: the handler only records the signal
            if stop.requested(dist):            # every process decides together (one all-reduce under torchrun)
                save_checkpoint(...)            # rank 0 writes
                raise Stopped(stop.signum)      # exit status 128 + the signal's number

Ctrl-C (SIGINT) is handled the same way: the step finishes, a checkpoint is written, and the run exits with 130. A
second Ctrl-C raises `KeyboardInterrupt` at once, without a checkpoint (the last complete one stands), for when the
first one is waiting on something slow (an evaluation).

Under torchrun a signal may reach one process and not the others (`kill` to one worker), or reach them at different
steps. `requested(dist)` combines the processes' signals with one all-reduce (the largest signal number wins), so
every process stops after the same step and takes the same exit status; it is called at the same point of the loop
by every process.

The exit status is 128 + the signal's number (143 for SIGTERM, 138 for SIGUSR1, 130 for Ctrl-C): the shell's status
for a process ended by that signal, so scripts and schedulers that read it see what they would have seen without the
handler, and the status W&B's documentation asks a preempted run to exit with (a non-zero status after
`run.mark_preempting()`). A batch script tells "stopped, resume me" (138, 143) from "failed" (1, 2) by it.

Signal handlers can only be installed from the main thread; elsewhere (a run started from a worker thread)
`StopSignals` installs nothing and the signals keep their previous meaning.

Read next: `training/run.py` (what a stopped run saves), `docs/reliability.md` (an sbatch script that requeues).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from runtime.distributed import SINGLE_PROCESS, Distributed

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def exit_status(signum: int) -> int:
    """The exit status of a run stopped by signal `signum`: 128 + its number, as the shell reports a signal death."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class Stopped(BaseException):
    """A run stopped by a signal after writing its checkpoint. A BaseException, like KeyboardInterrupt, so that an
    `except Exception` on the way up does not swallow it; train.py turns it into the exit status `status`."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal_name(signum)}")
        self.signum = int(signum)
        self.status = exit_status(signum)


class StopSignals:
    """Records SIGTERM, SIGUSR1 and SIGINT while installed (a context manager); `requested()` reads them."""

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS, ignore_after_stop: bool = False) -> None:
        """`ignore_after_stop`: after a stop (`requested()` said yes), ignore SIGTERM and SIGUSR1 from then on
        instead of restoring their handlers. For torchrun's workers: as soon as one stopped worker exits, torchrun sends
        SIGTERM to the others, which have written what they had to and are on their way out too."""
        self.signals = signals
        self.ignore_after_stop = ignore_after_stop
        self.received: int | None = None  # the first signal this process received
        self.signum: int | None = None  # the signal every process agreed on at the last `requested()`, if any
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Only record: the loop stops after the step it is in. A second Ctrl-C is the way out of a slow wait.
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt
        if self.received is None:
            self.received = signum

    def install(self) -> StopSignals:
        """Record the signals from now on (main thread only; elsewhere nothing changes)."""
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def restore(self) -> None:
        """Put the previous handlers back; with `ignore_after_stop`, after a stop, ignore SIGTERM and SIGUSR1."""
        leaving = self.ignore_after_stop and self.signum is not None
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_IGN if leaving and signum != signal.SIGINT else handler)
        self._previous.clear()

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.restore()

    def requested(self, dist: Distributed = SINGLE_PROCESS) -> bool:
        """Whether any process received a stop signal. Under torchrun a collective: every process must call it at
        the same point, and every process gets the same answer (and the same `signum`)."""
        received = self.received or 0
        agreed = int(dist.max(received)) if dist.enabled else received
        self.signum = agreed or None
        return self.signum is not None

    @property
    def status(self) -> int:
        """The exit status for the agreed signal (0 when none)."""
        return exit_status(self.signum) if self.signum else 0
