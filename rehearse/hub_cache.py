"""A Hugging Face cache laid out as `huggingface_hub` lays out what it downloads, filled here instead of downloaded.

    {HF_HOME}/hub/models--Qwen--Qwen3-0.6B-Base/
        refs/main                     the commit that "main" points at (40 hex digits)
        snapshots/{commit}/           the repo's files at that commit: config.json, model.safetensors, ...

With `HF_HUB_OFFLINE=1`, `hf_hub_download` and `snapshot_download` read `refs/main` and return files from that
snapshot without any connection: exactly what they do on a machine where the repo was downloaded before. The
hub's own cache keeps each file once under `blobs/` and links it from the snapshot; plain files in the snapshot read
the same (tests/test_hub.py relies on it too). The commit is made up: a hash of the repo id, the same every run.

Reference: https://huggingface.co/docs/huggingface_hub/guides/manage-cache

Read next: `rehearse/qwen3.py` (what goes into the decoder's snapshot).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

REPO_FOLDER_PREFIX = {"model": "models", "dataset": "datasets"}


def commit_of(repo_id: str) -> str:
    """A made-up commit hash for `repo_id`: 40 hex digits, the same every run."""
    return hashlib.sha1(repo_id.encode()).hexdigest()


def snapshot_folder(hub_cache: Path, repo_id: str, repo_type: str = "model") -> Path:
    """The snapshot folder `refs/main` points at, created empty; the caller writes the repo's files into it."""
    storage = hub_cache / f"{REPO_FOLDER_PREFIX[repo_type]}--{repo_id.replace('/', '--')}"
    commit = commit_of(repo_id)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(commit)
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def write_json(path: Path, data: dict[str, Any]) -> None:
    """A JSON file as the hub's repos hold them: indented, a newline at the end."""
    path.write_text(json.dumps(data, indent=2) + "\n")


def folder_bytes(folder: Path) -> int:
    """The bytes of every file under `folder`."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
