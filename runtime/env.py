"""Where things are: the repository, the default data folder beside it, the `.env` file, and paths named by a user.

Every default folder is fixed against the repository, never the current directory, so a command means the same
thing wherever it is run from (`cd /tmp && python ~/tiny-vlm/caption.py photo.jpg` finds the same runs as
`python caption.py photo.jpg` in the checkout; a `python -m` command run elsewhere needs `PYTHONPATH=~/tiny-vlm`,
since the project is not installed: README, "Two commands"):

    REPO        the checkout (the folder holding train.py)
    DATA_ROOT   REPO/../.data: `.data` beside the checkout, outside it (so nothing written there is committed)
                models/  the runs and their checkpoints (train.py --output-dir, env OUTPUT_DIR_MODELS)
                cache/   datasets, encoder features, the demo's pretrained LM (--cache-dir)
                experiments/  the experiment grids' runs and results (python -m experiments)
    DOTENV      REPO/.env: the one `.env` every command reads (`cp .env.example .env`)

A relative path inside `.env` (`OUTPUT_DIR_MODELS=../.data/models`) is relative to the `.env` file's folder, the
repository, as docker compose reads it; a relative path typed on a command line or set in the shell's environment is
relative to the current directory, as any shell path. Error messages show paths absolute (`absolute`).

`.env.example` documents the keys. Precedence everywhere: command-line flag > environment variable > `.env` >
default. Values are never printed: the file may hold HF_TOKEN or WANDB_API_KEY.

Read next: `training/config.py` (the settings it fills), `.env.example` (the keys).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from errors import UserError

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO.parent / ".data"
DOTENV = REPO / ".env"
DEFAULT_OUTPUT_DIR = str(DATA_ROOT / "models")  # train.py --output-dir, caption.py's 'latest' (env OUTPUT_DIR_MODELS)
DEFAULT_CACHE_DIR = str(DATA_ROOT / "cache")  # datasets, encoder features, the demo's pretrained LM (--cache-dir)
PATH_KEYS = ("OUTPUT_DIR_MODELS",)  # `.env` keys that name a folder: a relative value is relative to the file


def absolute(path: str | Path) -> Path:
    """`path` with `~` expanded, made absolute against the current directory and normalised (no `..`), without
    following symbolic links: the form error messages show."""
    return Path(os.path.abspath(Path(path).expanduser()))


def dotenv_values(path: str | Path | None = None) -> dict[str, str]:
    """The keys set in the `.env` file (default: `DOTENV`, the repository's; an absent file is an empty dict; keys
    without a value are left out). A relative folder of `PATH_KEYS` is returned absolute, against the file's folder."""
    path = Path(DOTENV if path is None else path)
    if not path.exists():
        return {}
    from dotenv import dotenv_values as read  # python-dotenv, imported only when there is a file to read

    values = {k: v for k, v in read(path).items() if v is not None}
    for key in PATH_KEYS:
        if values.get(key):
            values[key] = str(absolute(path.parent.absolute() / Path(values[key]).expanduser()))
    return values


def check_folder(path: str | Path, flag: str, *, must_exist: bool = False) -> Path:
    """A folder a command will read or write: refused in one line when a file is there instead (or, with
    `must_exist`, when nothing is). Returns it absolute."""
    folder = absolute(path)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {folder} is a file; expected a folder")
    if must_exist and not folder.is_dir():
        raise UserError(f"{flag} {folder}: no such folder")
    return folder


def check_file(path: str | Path, flag: str) -> Path:
    """A file a command will read: refused in one line when it is missing or a folder. Returns it absolute."""
    file = absolute(path)
    if file.is_dir():
        raise UserError(f"{flag} {file} is a folder; expected a file")
    if not file.is_file():
        raise UserError(f"{flag} {file}: no such file")
    return file


def cpu_name() -> str:
    """The processor's name as /proc/cpuinfo gives it on Linux ("AMD EPYC"), else what `platform` knows: the machine
    that results files (the demo's `demo.json`, BENCHMARKS.md) say produced their numbers."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
