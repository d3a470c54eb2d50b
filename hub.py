"""The Hugging Face hub in one place: checking a repo id, uploading a folder as one commit, downloading a repo.

Two uploads use it: `python -m synth --push-to-hub` (a dataset repo, `synth/hub.py`) and `python train.py
--push-to-hub` (a model repo, `checkpoints/share.py`); `hf:OWNER/NAME` checkpoints are downloaded through it.

Uploading is two calls of `huggingface_hub.HfApi` (https://huggingface.co/docs/huggingface_hub/guides/upload):
`create_repo(repo_id, repo_type=..., private=True, exist_ok=True)` makes the repo if it is not there yet (privacy is
only set at creation: an existing repo keeps its visibility), and `upload_folder` sends the chosen files in one
commit, skipping files the repo already has unchanged.

The token comes from the environment (`HF_TOKEN`, a write token) or a saved `hf auth login`; it is never printed.
Uploading is the last step and nothing depends on it: when it fails (no network, `HF_HUB_OFFLINE=1`, a bad token,
no permission) the files stay on disk, the user gets one line saying so, and can run the upload again later.

Downloading is `snapshot_download` (https://huggingface.co/docs/huggingface_hub/guides/download): files go to the
hub cache (`HF_HOME/hub/models--OWNER--NAME/snapshots/<commit>/...`), `HF_TOKEN` opens private repos, and with
`HF_HUB_OFFLINE=1` the cached snapshot that `refs/main` points at is used without any connection.

Read next: `checkpoints/share.py` (a checkpoint as a model repo), `synth/hub.py` (a synthetic dataset as a dataset one).
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi, get_token, snapshot_download
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from errors import UserError


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (hub errors carry whole HTTP responses), cut to `limit`."""
    return (str(err).strip().splitlines() or [""])[0][:limit]


def check_repo_id(repo_id: str, label: str | None = None, form: str = "OWNER/NAME") -> None:
    """Fail early on a repo id the hub would refuse; no network. Ours are always OWNER/NAME.

    `label` names the value in the error line (default: "--push-to-hub 'the id'"), `form` is the accepted form."""
    try:
        validate_repo_id(repo_id)
        if repo_id.count("/") != 1:
            raise HFValidationError("no owner")
    except HFValidationError as err:
        label = label or f"--push-to-hub {repo_id!r}"
        raise UserError(f"{label} is not a valid repo id; write it as {form}") from err


def upload_folder(
    folder: Path,
    repo_id: str,
    *,
    repo_type: str,
    private: bool,
    allow_patterns: list[str],
    commit_message: str,
    keep: str,
) -> str:
    """Create the repo if needed and upload the files of `folder` that match `allow_patterns` in one commit.

    `keep` finishes every error line: where the files still are and how to try again. Returns the repo's URL.
    """
    check_repo_id(repo_id)
    if hf_constants.HF_HUB_OFFLINE:
        raise UserError(f"cannot upload to {repo_id}: HF_HUB_OFFLINE is set; {keep}")
    if get_token() is None:
        raise UserError(f"cannot upload to {repo_id}: no Hugging Face token (set HF_TOKEN to a write token); {keep}")
    api = HfApi()
    try:
        repo = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            repo_type=repo_type,
            folder_path=str(folder),
            allow_patterns=allow_patterns,
            commit_message=commit_message,
        )
    # Any failure of these remote calls (the HTTP library's connection errors differ between huggingface_hub
    # versions, HfHubHTTPError for 401/403/404, OSError) is reported the same way: one line, files safe on disk.
    # The token is never part of these messages (huggingface_hub sends it in a header and does not echo it).
    except Exception as err:
        raise UserError(
            f"could not upload to the hub {repo_type} repo {repo_id} ({type(err).__name__}: {first_line(err)}); {keep}"
        ) from err
    return str(repo)


def download_repo(repo_id: str, allow_patterns: list[str], what: str, instead: str) -> Path:
    """The local snapshot of a hub model repo (downloaded once into the hub cache; the cache alone when offline).

    `what` names the repo in an error line (e.g. "hf:OWNER/NAME"), `instead` what to pass for a local copy in DIR.
    """
    try:
        return Path(snapshot_download(repo_id=repo_id, repo_type="model", allow_patterns=allow_patterns))
    except Exception as err:  # no network, offline mode without a cached copy, unknown or private repo, ...
        if hf_constants.HF_HUB_OFFLINE:
            reason = f"HF_HUB_OFFLINE is set and it is not in the hub cache: {type(err).__name__}"
        else:  # unreachable, no such repo, or private without a token: the hub's own first line says which
            reason = f"{type(err).__name__}: {first_line(err, 120)}"
        raise UserError(
            f"could not fetch {what} from the Hugging Face Hub ({reason}); for a private repo "
            f"set HF_TOKEN; without network, run `hf download {repo_id} --local-dir DIR` on a machine with network "
            f"and pass {instead} instead"
        ) from None
