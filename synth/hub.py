"""Uploading a synthetic dataset folder to the Hugging Face hub, as a private dataset repo by default.

What goes up: the card, the shards and the rejected log, in one commit to a dataset repo. The upload itself (repo
creation, privacy, the token, offline mode, one-line errors) is the project's one hub helper, `hub.upload_folder`,
shared with `python train.py --push-to-hub`. When the upload fails the data stays on disk and the user can run it
again later. `--dry-run` shows what would be sent without touching the network.

Read next: `hub.py` (the upload itself), `data/synthetic.py` (training on the data).
"""

from __future__ import annotations

from pathlib import Path

import hub
from data.synthetic import CARD_FILE, DATA_DIR, REJECTED_FILE, SHARD_GLOB, shard_paths
from errors import UserError
from hub import check_repo_id

__all__ = ["UPLOAD_PATTERNS", "check_repo_id", "describe_upload", "push_to_hub", "upload_files"]

UPLOAD_PATTERNS = [CARD_FILE, f"{DATA_DIR}/{SHARD_GLOB}", REJECTED_FILE]


def upload_files(out_dir: Path) -> list[Path]:
    """The files of `out_dir` an upload sends (relative paths): the card, the shards, the rejected log."""
    out_dir = Path(out_dir)
    files = [out_dir / CARD_FILE, *shard_paths(out_dir), out_dir / REJECTED_FILE]
    return [f.relative_to(out_dir) for f in files if f.is_file()]


def describe_upload(out_dir: Path, repo_id: str, private: bool) -> str:
    """What an upload would do, in a few lines (for --dry-run); no network."""
    files = upload_files(out_dir)
    where = f"the {'private' if private else 'public'} dataset repo {repo_id} (repo_type=dataset, created if missing)"
    if not shard_paths(out_dir):
        return f"dry run: nothing to upload yet; once generated, {', '.join(UPLOAD_PATTERNS)} would go to {where}"
    sizes = {f: (Path(out_dir) / f).stat().st_size for f in files}
    lines = [
        f"dry run: would upload {len(files)} files ({sum(sizes.values()) / 1e6:.2f} MB) from {out_dir} to {where}:"
    ]
    lines += [f"  {f} ({sizes[f]:,} bytes)" for f in files]
    return "\n".join(lines)


def push_to_hub(out_dir: Path, repo_id: str, private: bool = True) -> str:
    """Create the dataset repo if needed and upload `out_dir`'s files; return the repo's URL."""
    check_repo_id(repo_id)
    files = upload_files(out_dir)
    if not shard_paths(out_dir):
        raise UserError(f"nothing to upload: {out_dir} has no {DATA_DIR}/{SHARD_GLOB} files yet")
    return hub.upload_folder(
        out_dir,
        repo_id,
        repo_type="dataset",
        private=private,
        allow_patterns=UPLOAD_PATTERNS,
        commit_message=f"Synthetic captions and questions ({len(files)} files)",
        keep=f"the data is still in {out_dir}; rerun with --push-to-hub {repo_id} to upload it",
    )
