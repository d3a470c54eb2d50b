"""The `.env` file: the one place it is read (training/config.py's settings, caption.py's output folder).

`.env.example` documents the keys. Precedence everywhere: command-line flag > environment variable > `.env` >
default. Values are never printed: the file may hold HF_TOKEN or WANDB_API_KEY.

Read next: `training/config.py` (the settings it fills), `.env.example` (the keys).
"""

from __future__ import annotations

from pathlib import Path


def dotenv_values(path: str | Path = ".env") -> dict[str, str]:
    """The keys set in `path` (an absent file is an empty dict; keys without a value are left out)."""
    if not Path(path).exists():
        return {}
    from dotenv import dotenv_values as read  # python-dotenv, imported only when there is a file to read

    return {k: v for k, v in read(path).items() if v is not None}
