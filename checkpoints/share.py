"""`python train.py --push-to-hub OWNER/NAME`: share a trained checkpoint as a Hugging Face Hub model repo.

A checkpoint holds only what trained (the bridge and the top K decoder blocks), so it is cheap to share. The repo
gets three things, in one commit (the project's one hub helper, `hub.upload_folder`, as `python -m synth` uses):

    checkpoint.safetensors   the trained tensors, as saved
    checkpoint.json          the sidecar: what to rebuild the model from (decoder, tokenizer, encoder, view, K, ...)
    README.md                the model card: hub metadata, then what it is, how it was measured, how to use it
    decoder/                 only for a small local decoder (the demo's), see below

Anyone then loads it by name: `caption.py --checkpoint hf:OWNER/NAME`, `load_trained("hf:OWNER/NAME")`
(`checkpoints.store.local_checkpoint` downloads the repo into the hub cache; the frozen parts come from the
sources the sidecar names, as for a local checkpoint).

The frozen decoder is named in the sidecar by where it came from. A hub id (`Qwen/Qwen3-0.6B-Base`) is fine
anywhere. A local directory is not, since the path means nothing on another machine. The rule:
- a local decoder of at most BUNDLE_LIMIT_BYTES (the demo's tiny decoder, 2 MB, wherever it lives: beside the
  checkpoints or under the cache directory) is carried in the repo as `decoder/`, and the uploaded sidecar says so
  (`decoder.bundled`), so the round trip works with nothing else;
- a larger local decoder is refused in one line, before anything is uploaded: carrying a copy of a 1.2 GB model in
  every checkpoint repo is wrong, and an upload without it would not load elsewhere. When that directory is a copy
  of a hub model (`hf download Qwen/Qwen3-0.6B-Base --local-dir DIR`), `--hub-decoder Qwen/Qwen3-0.6B-Base` records
  that id instead (the config is still checked against the sidecar when the model is loaded).
Encoder weights from a local file are not uploaded either; the push says so, and users pass their copy with
`caption.py --encoder-weights FILE`.

Nothing local changes: the files are staged in a temporary folder (hard links or copies), the uploaded sidecar is a
rewritten copy, and a failed upload (offline, no token, no network, no permission) is one line, exit status 2.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hub
from checkpoints.model_card import model_card
from checkpoints.restore import decoder_source, is_local_path, read_sidecar
from checkpoints.store import (
    HUB_DECODER_DIR,
    HUB_SIDECAR,
    HUB_WEIGHTS,
)
from errors import UserError

CARD_FILE = "README.md"
UPLOAD_PATTERNS = [CARD_FILE, HUB_WEIGHTS, HUB_SIDECAR, f"{HUB_DECODER_DIR}/*"]
BUNDLE_LIMIT_BYTES = 200 * 1024**2  # a local decoder up to this size travels in the repo (the demo's is ~2 MB)


@dataclass
class Upload:
    """A prepared upload: the staged folder, what it holds, and notes for the user."""

    checkpoint: Path
    folder: Path
    repo_id: str
    private: bool
    commit_message: str
    card: str
    notes: list[str]

    def files(self) -> list[tuple[str, int]]:
        """(path in the repo, bytes) of every staged file."""
        found = [p for p in sorted(self.folder.rglob("*")) if p.is_file()]
        return [(p.relative_to(self.folder).as_posix(), p.stat().st_size) for p in found]

    def describe(self) -> str:
        """What would be uploaded (for --dry-run): the files, the repo, the commit, then the card."""
        files = self.files()
        where = f"the {'private' if self.private else 'public'} model repo {self.repo_id} (repo_type=model)"
        lines = [f"dry run: would upload {len(files)} files ({sum(s for _, s in files) / 1e6:.2f} MB) of "
                 f"{self.checkpoint} to {where}, created if missing, in one commit {self.commit_message!r}:"]  # fmt: skip
        lines += [f"  {name} ({size:,} bytes)" for name, size in files]
        lines += self.notes
        lines += [f"{CARD_FILE}, the model card:", self.card]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# Which checkpoint, and what goes with it
# ---------------------------------------------------------------------------------------------------------------------


def complete_epoch(weights: Path) -> bool:
    """Whether a checkpoint closed its epoch (one saved mid-epoch by --save-every or Ctrl-C has no evaluation to
    show on the card)."""
    try:
        return bool(json.loads(weights.with_suffix(".json").read_text()).get("complete_epoch"))
    except (OSError, json.JSONDecodeError):
        return False


def directory_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def plan_decoder(sidecar: dict[str, Any], checkpoint: Path, hub_decoder: str | None) -> tuple[dict, Path | None]:
    """The uploaded sidecar's decoder and tokenizer sections, and the local decoder folder to carry (or None)."""
    decoder, tokenizer = dict(sidecar["decoder"]), dict(sidecar["tokenizer"])
    decoder.pop("bundled", None)
    if hub_decoder is not None:  # trained from a local copy of a hub model: record its id
        hub.check_repo_id(hub_decoder, label=f"--hub-decoder {hub_decoder!r}")
        decoder["trained_from"] = decoder["source"]
        decoder["source"] = tokenizer["source"] = hub_decoder
        return {"decoder": decoder, "tokenizer": tokenizer}, None
    source = decoder_source(sidecar, checkpoint)  # also finds a moved demo decoder, or one carried in a pulled repo
    local = Path(source).expanduser()
    if local.is_dir():
        size = directory_size(local)
        if size > BUNDLE_LIMIT_BYTES:
            raise UserError(
                f"the decoder is the local folder {local} ({size / 1e6:,.0f} MB), too large to carry in the repo "
                f"(limit {BUNDLE_LIMIT_BYTES / 1e6:.0f} MB) and meaningless as a path elsewhere; if it is a copy of a "
                "hub model, add --hub-decoder OWNER/NAME (e.g. Qwen/Qwen3-0.6B-Base) to record that id instead"
            )
        decoder["bundled"] = HUB_DECODER_DIR
        return {"decoder": decoder, "tokenizer": tokenizer}, local
    if is_local_path(source):
        raise UserError(
            f"the decoder {source} that {checkpoint.name} was trained with is not on this machine, so it cannot be "
            "carried in the repo; push from the machine that has it, or add --hub-decoder OWNER/NAME"
        )
    return {"decoder": decoder, "tokenizer": tokenizer}, None  # a hub id: fetched by name wherever it is loaded


def recorded_test_metrics(sidecar: dict[str, Any], checkpoint: Path) -> dict[str, float]:
    """The metrics of `train.py --test` on this checkpoint, from its run's metrics.json, when it was run."""
    if "test_metrics" in sidecar:  # re-pushing a pulled checkpoint: they travel in its sidecar
        return sidecar["test_metrics"]
    if not sidecar.get("run_dir"):
        return {}
    path = Path(sidecar["run_dir"]) / "metrics.json"
    try:
        return json.loads(path.read_text()).get(f"test/{checkpoint.stem}", {})
    except (OSError, json.JSONDecodeError):
        return {}


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link when source and target share a file system (no copy of a large file), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


# ---------------------------------------------------------------------------------------------------------------------
# Prepare, describe, push
# ---------------------------------------------------------------------------------------------------------------------


def prepare_upload(
    checkpoint: Path, repo_id: str, private: bool, staging: Path, hub_decoder: str | None = None
) -> Upload:
    """Stage what the repo gets in `staging`: weights, the rewritten sidecar, the card, a carried decoder."""
    hub.check_repo_id(repo_id)
    weights, sidecar = read_sidecar(checkpoint)  # a checkpoint of train.py with its sidecar, or one line
    sources, carried = plan_decoder(sidecar, checkpoint, hub_decoder)
    test_metrics = recorded_test_metrics(sidecar, checkpoint)
    uploaded = {
        **sidecar,
        **sources,
        "run_dir": None,  # a path on the training machine: train.py --test writes elsewhere on the user's
        "hub": {"repo_id": repo_id, "checkpoint": checkpoint.name, "pushed": _now()},
    }
    if test_metrics:
        uploaded["test_metrics"] = test_metrics
    base_model = None if carried is not None else uploaded["decoder"]["source"]
    decoder_note = (
        f"a local Qwen3 decoder carried in this repo (`{HUB_DECODER_DIR}/`; trained from "
        f"`{Path(sidecar['decoder']['source']).name}`)"
        if carried is not None
        else f"`{base_model}`, our hand-written Qwen3 loading its safetensors"
    )
    card = model_card(
        uploaded,
        repo_id,
        base_model=base_model,
        decoder_note=decoder_note,
        trainable_parameters=sum(t.numel() for t in weights.values()),
        test_metrics=test_metrics,
    )
    link_or_copy(checkpoint, staging / HUB_WEIGHTS)
    (staging / HUB_SIDECAR).write_text(json.dumps(uploaded, indent=2, default=str))
    (staging / CARD_FILE).write_text(card)
    if carried is not None:
        for path in sorted(p for p in carried.rglob("*") if p.is_file() and not p.name.startswith(".")):
            link_or_copy(path, staging / HUB_DECODER_DIR / path.relative_to(carried))
    notes = []
    encoder_weights = str(sidecar["model"].get("encoder_weights", "default"))
    if encoder_weights not in ("default", "none") and is_local_path(encoder_weights):
        notes.append(
            f"note: the encoder weights are the local file {encoder_weights}; they are not uploaded (users pass "
            "their copy with caption.py --encoder-weights FILE)"
        )
    model = sidecar["model"]
    message = (
        f"{checkpoint.name}: epoch {sidecar.get('epoch', '?')}, step {sidecar.get('global_step', '?')} "
        f"({model['encoder']} encoder, top-{model['top_k']} blocks trained)"
    )
    return Upload(checkpoint, staging, repo_id, private, message, card, notes)


def push_checkpoint(
    checkpoint: Path, repo_id: str, *, private: bool = True, dry_run: bool = False, hub_decoder: str | None = None
) -> str:
    """--push-to-hub: upload `checkpoint` (or with `dry_run` describe the upload); the lines to print."""
    hub.check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix="tiny-vlm-push-") as staging:
        upload = prepare_upload(checkpoint, repo_id, private, Path(staging), hub_decoder)
        if dry_run:
            return upload.describe()
        url = hub.upload_folder(
            upload.folder,
            upload.repo_id,
            repo_type="model",
            private=upload.private,
            allow_patterns=UPLOAD_PATTERNS,
            commit_message=upload.commit_message,
            keep=f"the checkpoint is still at {checkpoint}; rerun with --push-to-hub {upload.repo_id} to upload it",
        )
        files = len(upload.files())
    privacy = "private" if upload.private else "public"
    done = (
        f"uploaded {checkpoint.name} ({files} files) to {url} ({privacy}); use it with --checkpoint hf:{upload.repo_id}"
    )
    return "\n".join([*upload.notes, done])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
