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

Nothing private goes up (`public_sidecar`, then `check_nothing_private` on the staged files): the uploaded sidecar
keeps what a user of the repo needs (the decoder's hub id, or `decoder` when it is carried; the encoder and its
weights tag; the data source's public name: `shapes`, `flickr30k`, `hf:OWNER/NAME`, a local folder by its name only)
and leaves out where and how the run ran on the training machine: `run_dir`, the output and cache folders, the run
name, W&B's project, entity and group (values that come from the environment), the device and thread settings. Any
other absolute path is cut to its last part. Before anything is uploaded, the staged text files are searched for the
local sidecar's absolute paths, the home folder and the values of secret-looking environment variables (`*TOKEN*`,
`*KEY*`, `*SECRET*`, `*PASSWORD*`, `*AUTH*`); a hit is one line and nothing is uploaded. The local sidecar keeps
its paths. See docs/reliability.md, "What a pushed repo contains".

Nothing local changes: the files are staged in a temporary folder (hard links or copies), the uploaded sidecar is a
rewritten copy, and a failed upload (offline, no token, no network, no permission) is one line, exit status 2.

Read next: `checkpoints/model_card.py` (the card), docs/sharing.md (using a shared checkpoint).
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
from runtime.settings import setting

CARD_FILE = "README.md"
UPLOAD_PATTERNS = [CARD_FILE, HUB_WEIGHTS, HUB_SIDECAR, f"{HUB_DECODER_DIR}/*"]
BUNDLE_LIMIT_BYTES = 200 * 1024**2  # a local decoder up to this size travels in the repo (the demo's is ~2 MB)
# train_config fields that say where and how the run ran on its machine, not what was trained: not pushed.
MACHINE_FIELDS = (
    "output_dir", "cache_dir", "run_name", "resume", "checkpoint", "push_to_hub", "public", "dry_run", "hub_decoder",
    "device", "threads", "num_workers", "wandb", "wandb_project", "wandb_entity", "wandb_group",
)  # fmt: skip
SECRET_NAMES = ("TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "AUTH", "CREDENTIAL")  # in an environment variable
VOCABULARY_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "vocab.txt")  # their tokens may spell anything


@dataclass(frozen=True)
class HubUpload:
    """What `train.py --push-to-hub OWNER/NAME` uploads, and how: the upload's flags, held by the training
    configuration as a part (`TrainConfig.share`) although an upload trains nothing (train.py runs it instead)."""

    push_to_hub: str | None = setting(
        None,
        "upload a checkpoint (newest complete one of this encoder and K, or --checkpoint) with a model card to this hub "
        "model repo, OWNER/NAME, and exit (trains nothing); token from HF_TOKEN (default: none)",
    )
    public: bool = setting(False, "with --push-to-hub: create the repo public (default: private)")
    dry_run: bool = setting(False, "with --push-to-hub: print what would be uploaded, without network")
    hub_decoder: str | None = setting(
        None,
        "with --push-to-hub: the hub id of the decoder when it was trained from a local copy of it (recorded instead "
        "of the local path; default: none)",
    )

    def __post_init__(self) -> None:
        if self.push_to_hub is None:
            for key in ("public", "dry_run", "hub_decoder"):
                if getattr(self, key):
                    raise UserError(
                        f"--{key.replace('_', '-')} only applies to an upload; add --push-to-hub OWNER/NAME"
                    )
            return
        hub.check_repo_id(self.push_to_hub)  # before anything is read
        if self.hub_decoder is not None:
            hub.check_repo_id(self.hub_decoder, label=f"--hub-decoder {self.hub_decoder!r}")


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


def directory_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def plan_decoder(sidecar: dict[str, Any], checkpoint: Path, hub_decoder: str | None) -> tuple[dict, Path | None]:
    """The uploaded sidecar's decoder and tokenizer sections, and the local decoder folder to carry (or None)."""
    decoder, tokenizer = dict(sidecar["decoder"]), dict(sidecar["tokenizer"])
    decoder.pop("bundled", None)
    if hub_decoder is not None:  # trained from a local copy of a hub model: record its id
        hub.check_repo_id(hub_decoder, label=f"--hub-decoder {hub_decoder!r}")
        decoder["trained_from"] = public_name(str(decoder["source"]))  # the local copy's folder name, not its path
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
        decoder["source"] = tokenizer["source"] = HUB_DECODER_DIR  # in the repo, not the folder on this machine
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
        recorded = json.loads(path.read_text()).get(f"test/{checkpoint.stem}", {})
    except (OSError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in recorded.items() if isinstance(v, int | float)}  # the numbers; not the protocol's dict


# ---------------------------------------------------------------------------------------------------------------------
# Nothing private in what is shared
# ---------------------------------------------------------------------------------------------------------------------


def is_absolute_path(value: str) -> bool:
    """A path that names a place on this machine: /..., ~..., or a Windows drive (C:\\..., C:/...)."""
    return value.startswith(("/", "~", "\\\\")) or (len(value) > 2 and value[1] == ":" and value[2] in "/\\")


def public_name(value: str, local: str = "") -> str:
    """A source as a user elsewhere can read it: hub ids, tags and names as they are; a local path by its last part
    (`/home/me/data/flickr` -> `flickr`), also after a prefix (`synthetic:/home/me/out` -> `synthetic:out`) and in
    a comma-separated list. A relative local path is cut too: it names a place on the training machine.

    `local` goes before a bare local path's last part: "./" for a data source, so that a folder named `flickr30k`
    stays `./flickr30k`, a local folder, and is never read as the built-in hub source `flickr30k` (or `shapes`)."""
    parts = []
    for part in str(value).split(","):
        prefix, colon, rest = part.strip().partition(":")
        if colon and prefix != "hf" and len(prefix) > 1 and (is_absolute_path(rest) or is_local_path(rest)):
            parts.append(f"{prefix}:{_last_part(rest)}")
        elif is_absolute_path(part.strip()) or is_local_path(part.strip()):
            parts.append(local + _last_part(part.strip()))
        else:
            parts.append(part.strip())
    return ",".join(parts)


def _last_part(path: str) -> str:
    return Path(path.replace("\\", "/").rstrip("/")).name or "."


def public_sidecar(sidecar: dict[str, Any]) -> dict[str, Any]:
    """The sidecar as it is pushed: what a user of the repo needs, nothing about the training machine.

    Kept: model (encoder, its weights tag or a local weights file's name, view, K, ...), the decoder and tokenizer
    sections (their sources are already a hub id or `decoder`, see `plan_decoder`), data (the sources' public names),
    the training hyperparameters, step and metrics. Left out: `run_dir` and the train_config fields of
    MACHINE_FIELDS. Any absolute path left anywhere (a field added later) is cut to its last part."""
    public = json.loads(json.dumps(sidecar, default=str))  # a deep copy, as plain JSON values
    public["run_dir"] = None  # train.py --test writes elsewhere on the user's machine
    model = public.get("model", {})
    if "encoder_weights" in model:
        model["encoder_weights"] = public_name(model["encoder_weights"])  # caption.py --encoder-weights FILE
    if isinstance(public.get("data"), dict) and "source" in public["data"]:
        public["data"]["source"] = public_name(public["data"]["source"], local="./")
    config = public.get("train_config")
    if isinstance(config, dict):
        for name in MACHINE_FIELDS:
            config.pop(name, None)
        for name in ("data", "decoder", "encoder_weights", "init_from"):
            if isinstance(config.get(name), str):
                config[name] = public_name(config[name])
    return _cut_paths(public)


def _cut_paths(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _cut_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_paths(v) for v in value]
    if isinstance(value, str) and is_absolute_path(value):
        return _last_part(value)
    return value


def private_strings(sidecar: dict[str, Any], checkpoint: Path) -> dict[str, str]:
    """What must not appear in a pushed file -> what it is (for the error line, which never shows a secret): the
    local sidecar's absolute paths, the checkpoint's folder, the home folder, secret-looking environment values."""
    found: dict[str, str] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and is_absolute_path(value):
            for path in {value, str(Path(value).expanduser())}:
                if len(path) > 1:
                    found[path] = f"the local path {path}"

    walk(sidecar)
    folder = str(checkpoint.expanduser().resolve().parent)
    found[folder] = f"the local path {folder}"
    home = str(Path.home())
    if len(home.rstrip("/")) > 1:
        found[home] = f"the home folder {home}"
    for name, value in os.environ.items():
        if any(word in name.upper() for word in SECRET_NAMES) and len(value) >= 8:
            found[value] = f"the value of ${name}"
    return found


def check_nothing_private(folder: Path, private: dict[str, str]) -> None:
    """Refuse, in one line and before any upload, a staged text file that holds one of `private` (vocabularies are
    not searched: their tokens may spell anything)."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix not in (".json", ".md", ".txt", ".yaml", ".yml") or path.name in VOCABULARY_FILES:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for value, what in private.items():
            if value in text:
                raise UserError(
                    f"refusing to push: {path.relative_to(folder).as_posix()} would carry {what}; nothing was "
                    "uploaded (a field the push does not clean: please report it)"
                )


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
    uploaded = public_sidecar({
        **sidecar,
        **sources,
        "hub": {"repo_id": repo_id, "checkpoint": checkpoint.name, "pushed": _now()},
    })  # fmt: skip
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
    check_nothing_private(staging, private_strings(sidecar, checkpoint))
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
