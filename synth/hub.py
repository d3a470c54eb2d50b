"""Uploading a synthetic dataset folder to the Hugging Face hub, as a private dataset repo by default.

Two calls of `huggingface_hub.HfApi` do it (https://huggingface.co/docs/huggingface_hub/guides/upload):
`create_repo(repo_id, repo_type="dataset", private=True, exist_ok=True)` makes the repo if it is not there yet
(privacy is only set at creation: an existing repo keeps its visibility), and `upload_folder` commits the card,
the shards and the rejected log in one commit, skipping files the repo already has unchanged.

The token comes from the environment (`HF_TOKEN`, a write token) or a saved `hf auth login`; it is never printed.
Uploading is the last step and nothing depends on it: when it fails (no network, `HF_HUB_OFFLINE=1`, a bad token,
no permission) the data stays on disk, the user gets one line saying so, and can run the upload again later.
`--dry-run` shows what would be sent without touching the network.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi, get_token
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from data.synthetic import CARD_FILE, DATA_DIR, REJECTED_FILE, SHARD_GLOB, shard_paths
from errors import UserError

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


def check_repo_id(repo_id: str) -> None:
    """Fail early (before hours of generation) on a repo id the hub would refuse; no network."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise UserError(f"--push-to-hub {repo_id!r} is not a valid repo id; write it as OWNER/NAME") from err


def push_to_hub(out_dir: Path, repo_id: str, private: bool = True) -> str:
    """Create the dataset repo if needed and upload `out_dir`'s files; return the repo's URL."""
    check_repo_id(repo_id)
    files = upload_files(out_dir)
    if not shard_paths(out_dir):
        raise UserError(f"nothing to upload: {out_dir} has no {DATA_DIR}/{SHARD_GLOB} files yet")
    keep = f"the data is still in {out_dir}; rerun with --push-to-hub {repo_id} to upload it"
    if hf_constants.HF_HUB_OFFLINE:
        raise UserError(f"cannot upload to {repo_id}: HF_HUB_OFFLINE is set; {keep}")
    if get_token() is None:
        raise UserError(f"cannot upload to {repo_id}: no Hugging Face token (set HF_TOKEN to a write token); {keep}")
    api = HfApi()
    try:
        repo = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=str(out_dir),
            allow_patterns=UPLOAD_PATTERNS,
            commit_message=f"Synthetic captions and questions ({len(files)} files)",
        )
    # Any failure of these remote calls (the HTTP library's connection errors differ between huggingface_hub
    # versions, HfHubHTTPError for 401/403/404, OSError) is reported the same way: one line, data safe on disk.
    except Exception as err:
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        raise UserError(
            f"could not upload to the hub dataset repo {repo_id} ({type(err).__name__}: {reason}); {keep}"
        ) from err
    return str(repo)
