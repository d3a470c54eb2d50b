"""Experiment tracking: Weights & Biases plus a local JSON-lines log that needs no account.

Every number the training loop reports goes to two places:

* `run_dir/metrics.jsonl`, one JSON object per line: `{"step": 100, "train/loss": 2.31, ...}`. Plain
  text, always written, easy to read back with `json.loads` per line (or `pandas.read_json(path,
  lines=True)`). Tables are lines with a "table" key (see `Tracker.log_table`); `summary` values go to
  `run_dir/summary.json`.
* Weights & Biases (https://docs.wandb.ai/guides/track/), in one of its modes:
    - "online": streams to wandb.ai while training (needs an API key and network);
    - "offline": writes everything under `run_dir/wandb/offline-run-*/` (the `.wandb` file holds the
      logged history); upload it later with `wandb sync run_dir/wandb/offline-run-*`;
    - "disabled": no W&B at all (nothing is imported or written besides the JSON files);
    - "auto" (default): `WANDB_MODE` from the environment if set, else "online" when an API key is
      configured the way wandb looks for one (the `WANDB_API_KEY` variable, or a `.netrc` entry for the
      W&B host, which `wandb login` writes), else "offline".

If W&B fails to start online (no network, server down), the tracker says so in one warning line and
falls back to offline, so a training run never dies because of its logger. API keys are never printed.
Without network, wandb itself gives up only after its `init_timeout` (90 s by default).

Offline caveat: images inside logged *tables* are staged under wandb's data folder (`WANDB_DATA_DIR`,
default ~/.local/share/wandb) rather than in `run_dir`, until `wandb sync` uploads them.

Usage:
    with Tracker(Path("runs/exp1"), config={"lr": 1e-4}, entity="my-team") as tracker:
        tracker.log({"train/loss": 2.3}, step=10)
        tracker.log_table("samples", ["image", "caption"], [[pil_image, "a dog"]], step=10)
        tracker.summary({"best/cider_d": 0.71})

Tip: set WANDB_SILENT=true to hide wandb's own console messages (the tests do).

Read next: `training/loop.py` (what it logs each step), `evaluation/evaluate.py` (what it logs each epoch).
"""

from __future__ import annotations

import contextlib
import json
import logging
import netrc
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from PIL import Image
from rich.console import Console

from errors import UserError
from runtime.files import describe_write_error, write_text_atomically

log = logging.getLogger(__name__)

MODES = ("auto", "online", "offline", "disabled")
DEFAULT_PROJECT = "mlx8-w4-multimodal-transferlearning"
DEFAULT_WANDB_HOST = "https://api.wandb.ai"


def wandb_api_key_configured() -> bool:
    """True when wandb would find an API key: `WANDB_API_KEY`, or a netrc entry for the W&B host.

    This mirrors wandb's own lookup (wandb/sdk/lib/wbauth/authenticate.py, wbnetrc.py): the environment
    variable first, then the netrc file named by `NETRC` or `~/.netrc`, keyed by the host of
    `WANDB_BASE_URL` (default api.wandb.ai). The key itself is never returned or printed.
    """
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc_path = Path(os.environ.get("NETRC") or "~/.netrc").expanduser()
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_WANDB_HOST).netloc
    try:
        entry = netrc.netrc(netrc_path).authenticators(host)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return bool(entry and entry[2])  # entry = (login, account, password); the password is the key


def resolve_mode(mode: str) -> str:
    """Turn "auto" into "online"/"offline"/"disabled" (see the module docstring); check the others."""
    if mode not in MODES:
        raise UserError(f"unknown W&B mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode != "auto":
        return mode
    env_mode = os.environ.get("WANDB_MODE", "").lower()
    if env_mode in ("online", "offline", "disabled"):
        return env_mode
    return "online" if wandb_api_key_configured() else "offline"


def _redact(text: str) -> str:
    """Remove the API key from a message, in case an error echoes it."""
    key = os.environ.get("WANDB_API_KEY")
    return text.replace(key, "***") if key else text


def _first_line(error: BaseException) -> str:
    """The first line of an error message, without the API key, for a one-line report."""
    text = _redact(str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _json_value(value: Any) -> Any:
    """JSON-friendly version of a logged value (json.dumps `default=` hook).

    Tensors / numpy scalars become numbers; a PIL image becomes the file it was opened from (PIL sets
    `filename` in `Image.open`; images made or converted in memory have none) or null; anything else str().
    """
    if isinstance(value, Image.Image):
        return getattr(value, "filename", None) or None
    if hasattr(value, "item"):
        try:
            return value.item()
        except (ValueError, RuntimeError):  # numpy / torch: more than one element
            pass
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


class Tracker:
    """Logs metrics, tables and a summary to W&B (see `mode`) and to `run_dir/metrics.jsonl`.

    Args:
        run_dir: folder of this run; created if missing. W&B files go to `run_dir/wandb`.
        config: hyperparameters, stored with the W&B run (shown as its config).
        mode: "auto", "online", "offline" or "disabled" (see the module docstring).
        project, entity, run_name: where the run goes on W&B; entity None = your default entity.

    The mode actually used is in `self.mode` ("auto" resolved, or "offline" after a failed online start).
    """

    def __init__(
        self,
        run_dir: Path,
        config: Mapping[str, Any],
        mode: str = "auto",
        project: str = DEFAULT_PROJECT,
        entity: str | None = None,
        run_name: str | None = None,
        group: str | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.summary_path = self.run_dir / "summary.json"
        self.mode = resolve_mode(mode)
        self._summary: dict[str, Any] = {}
        self._finished = False
        self._run = None
        if self.mode != "disabled":
            self._run = self._start_wandb(dict(config), project, entity, run_name, group)

    def _start_wandb(
        self, config: dict[str, Any], project: str, entity: str | None, run_name: str | None, group: str | None
    ) -> Any:
        # Imported here, not at the top: importing wandb takes about a second and starts nothing we need
        # in "disabled" mode.
        import wandb

        kwargs = dict(project=project, entity=entity, name=run_name, group=group, config=config, dir=str(self.run_dir))
        try:
            return wandb.init(mode=self.mode, **kwargs)
        except Exception as error:  # wandb raises many types (CommError, UsageError, timeouts ...)
            if self.mode != "online":
                raise UserError(
                    f"W&B could not start in {self.mode} mode ({_first_line(error)}); "
                    "use mode 'disabled' to train without W&B"
                ) from error
            log.warning(
                "W&B could not start online (%s); logging offline to %s instead (upload later: wandb sync)",
                _first_line(error),
                self.run_dir / "wandb",
            )
            self.mode = "offline"
            return wandb.init(mode="offline", **kwargs)

    def _append_jsonl(self, record: dict[str, Any]) -> None:
        # Append + close on every call: the file stays valid even if training crashes mid-run. A line that cannot be
        # written whole (a full disk) is cut off again, and the run ends with one line saying why. Unbuffered, so
        # that nothing of a failed line is left in a buffer to be written when the file closes.
        line = (json.dumps(record, default=_json_value) + "\n").encode()
        fd = os.open(self.metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            rest = memoryview(line)
            while rest:
                rest = rest[os.write(fd, rest) :]
        except OSError as err:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise describe_write_error(self.metrics_path, err, needed=len(line)) from err
        finally:
            os.close(fd)

    def log(self, metrics: Mapping[str, Any], step: int, to_wandb: bool = True) -> None:
        """Log scalar metrics at a training step (W&B needs steps that never decrease).

        `to_wandb=False` writes the line to metrics.jsonl only (about 0.03 ms): one W&B call costs the calling
        thread 0.4-0.8 ms (measured in offline mode), 1-2% of a demo step, so train.py sends every `--log-every`-th.
        """
        if "step" in metrics:
            raise ValueError("'step' is reserved for the step argument; rename that metric")
        self._append_jsonl({"step": step, **metrics})
        if self._run is not None and to_wandb:
            self._run.log(dict(metrics), step=step)

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], step: int) -> None:
        """Log a table (e.g. sample images with generated and reference captions).

        A cell may be a PIL image: W&B shows it as an image. In metrics.jsonl the line is
        `{"step": ..., "table": name, "columns": [...], "rows": [[...], ...]}` with each image replaced by
        its file path when PIL knows it (`Image.open`), else null -- put paths in a column to keep them.
        """
        columns = list(columns)
        rows = [list(row) for row in rows]
        for i, row in enumerate(rows):
            if len(row) != len(columns):
                raise ValueError(f"row {i} of table {name!r} has {len(row)} cells for {len(columns)} columns")
        self._append_jsonl({"step": step, "table": name, "columns": columns, "rows": rows})
        if self._run is not None:
            import wandb

            data = [[wandb.Image(c) if isinstance(c, Image.Image) else c for c in row] for row in rows]
            self._run.log({name: wandb.Table(columns=columns, data=data)}, step=step)

    def summary(self, values: Mapping[str, Any]) -> None:
        """Record final / best values (W&B run summary, and merged into run_dir/summary.json)."""
        self._summary.update(values)
        write_text_atomically(self.summary_path, json.dumps(self._summary, indent=2, default=_json_value) + "\n")
        if self._run is not None:
            self._run.summary.update(dict(values))

    def finish(self, exit_code: int = 0) -> None:
        """Close the W&B run and wait until its files are written; safe to call twice."""
        if self._finished:
            return
        self._finished = True
        if self._run is not None:
            import wandb

            self._run.finish(exit_code=exit_code)
            # run.finish() can return before wandb's background service has written everything to the
            # offline .wandb file (see github.com/wandb/wandb/issues/9525); shutting the service down waits
            # for it, so the run folder is complete -- ready for `wandb sync` -- when finish() returns.
            # The next wandb.init starts a new service.
            wandb.teardown()

    def stopped(self, exit_code: int, preempted: bool = True) -> None:
        """Close the W&B run of a run stopped by a signal, after its checkpoint: `preempted` (SIGTERM, SIGUSR1)
        marks it preempted with wandb's `run.mark_preempting()` rather than crashed, and `exit_code` (128 + the
        signal, non-zero as W&B's preemption contract asks) is the exit code it records."""
        if self._run is not None and not self._finished and preempted:
            self._run.mark_preempting()
        self.finish(exit_code=exit_code)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # A crash marks the W&B run as failed (exit code 1) instead of finished.
        self.finish(exit_code=0 if exc_type is None else 1)


# ---------------------------------------------------------------------------------------------------------------------
# The console and the run's files: what a person reads while and after training
# ---------------------------------------------------------------------------------------------------------------------


class Log:
    """Timestamped lines on stderr, from the main process only (with torchrun, only rank 0 talks)."""

    def __init__(self, is_main: bool = True) -> None:
        # force_jupyter=False: in a notebook too, plain lines on stderr (rich would render them through IPython's
        # display, which a captured cell, or nbclient's output, does not show)
        self.console = Console(stderr=True, highlight=False, force_jupyter=False)
        self.is_main = is_main

    def __call__(self, message: str, style: str = "cyan") -> None:
        if self.is_main:
            self.console.print(f"[{style}]{datetime.now():%H:%M:%S}[/] {message}")


class SilentTracker:
    """The tracker of torchrun processes other than rank 0: they log nothing."""

    mode = "off (rank > 0)"

    def log(self, *args, **kwargs) -> None:
        pass

    log_table = summary = finish = stopped = log


def format_metrics(title: str, metrics: Mapping[str, float]) -> str:
    keys = [k for k in metrics if not k.startswith("n_")]
    return title + ": " + ", ".join(f"{k} {metrics[k]:.3f}" for k in keys)


def log_samples(tracker: Tracker | SilentTracker, samples: Sequence[dict], step: int) -> None:
    """The evaluation's sample images with their generated and reference captions, as a W&B table."""
    rows = []
    for s in samples:
        with Image.open(s["image"]) as image:
            rows.append([image.convert("RGB"), s["image"], s["generated"], " | ".join(s["references"]),
                         s.get("question", ""), s.get("answer", ""), s.get("expected", "")])  # fmt: skip
    columns = ["image", "path", "generated", "references", "question", "answer", "expected"]
    tracker.log_table("samples", columns, rows, step=step)


def print_samples(log: Log, samples: Sequence[dict]) -> None:
    for s in samples:
        log.console.print(f"[bold]{Path(s['image']).name}[/]  generated: [green]{s['generated']}[/]")
        log.console.print(f"    reference: {s['references'][0]}")
        if "question" in s:
            log.console.print(f"    Q: {s['question']}  A: [green]{s['answer']}[/]  (expected: {s['expected']})")


def write_metrics(run_dir: Path, metrics: dict, merge: bool = False) -> None:
    """`run_dir/metrics.json`: every evaluation of the run with its protocol (merged into what is there)."""
    path = Path(run_dir) / "metrics.json"
    if merge and path.exists():
        metrics = {**json.loads(path.read_text()), **metrics}
    write_text_atomically(path, json.dumps(metrics, indent=2))
