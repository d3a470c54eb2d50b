"""Checkpoints: only what trains, written atomically, enough to resume exactly, in a folder per run.

Every run has its own folder, `{output_dir}/runs/{run_name}/`, beside its `metrics.json` and W&B files. A
checkpoint there is three files named after the epoch, the encoder and K:

    runs/vit_top3_20261206-101500/
        3_vit_top3.safetensors     bridge + top-K decoder blocks (megabytes, not the 0.6B decoder)
        3_vit_top3.json            sidecar: configuration, decoder/encoder sources, tokenizer, step, metrics
        3_vit_top3.state.pt        training state: optimizer, schedule, RNG states, data position
        4_vit_top3_step2150.*      a checkpoint written mid-epoch (--save-every, --max-steps, a signal): its step

so two runs in one output folder never overwrite, prune or resume each other's files. `find_run` picks a run by its
settings (their `run_keys`): the newest run whose settings match what the command asked for, and one line naming the
candidates when several runs match with different settings. A checkpoint written in the old flat layout (straight
in `output_dir`) still loads by its explicit path.

The frozen parts are not saved: they are rebuilt from their sources (the hub's Qwen3, timm/open_clip weights), which
the sidecar names (`checkpoints/restore.py`). Weights are safetensors (no pickle); the training state holds only
tensors and plain Python values and is read back with `torch.load(weights_only=True)`.

A checkpoint shared on the Hugging Face Hub (`python train.py --push-to-hub`, `checkpoints/share.py`) is a model
repo holding `checkpoint.safetensors`, `checkpoint.json` and a model card; `hf:OWNER/NAME` names it wherever a
checkpoint path is accepted (`--checkpoint`, `--init-from`, `load_trained`), and `local_checkpoint` downloads it into
the hub cache and returns the local path of its weights.

A checkpoint is one unit (`save_checkpoint`): its three files are written in full under temporary names, then
renamed with the sidecar last, and each records the step, so the files of two saves are never taken for one
checkpoint. A write that fails (a full disk, a file-size limit, no permission, an I/O error) is one line naming the
file, and leaves the previous checkpoints as they were and nothing of the new one. A checkpoint written mid-epoch has
its own name (`..._step{N}`), so it never replaces the epoch's checkpoint; once a newer checkpoint is complete, the
older mid-epoch ones are deleted, and then all but the `--keep-checkpoints` newest.

Read next: `checkpoints/restore.py` (a trained model from a checkpoint alone), `checkpoints/share.py` (the hub).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from bridge.vlm import VLMConfig
from errors import UserError
from runtime.env import DEFAULT_OUTPUT_DIR, absolute  # noqa: F401 (DEFAULT_OUTPUT_DIR: {repository}/../.data/models)
from runtime.files import describe_write_error, os_error_of, write_atomically

HUB_PREFIX = "hf:"  # --checkpoint hf:OWNER/NAME: a checkpoint pushed to the Hugging Face Hub
HUB_WEIGHTS = "checkpoint.safetensors"  # the file names of a pushed checkpoint in its repo
HUB_SIDECAR = "checkpoint.json"
HUB_DECODER_DIR = "decoder"  # a small local decoder carried in the repo (the demo's), see checkpoints/share.py
RUNS_DIR = "runs"  # {output_dir}/runs/{run_name}/: one run's checkpoints, metrics.json and W&B files
SUFFIXES = (".safetensors", ".state.pt", ".json")  # a checkpoint's files: weights, training state, sidecar
STAGED = ".staged.tmp"  # a file of a checkpoint being written: `.{stem}{suffix}.staged.tmp` (see save_checkpoint)
STEP_METADATA = "global_step"  # the weights' safetensors metadata key holding the checkpoint's step

# The settings that make a model: a checkpoint resumed or loaded into a model with other values does not fit it (or,
# worse, fits its tensor shapes and silently means something else: 4 or 9 hidden-view tokens have the same bridge).
# They are the decoder and the model's own settings (`VLMConfig`), read from its fields.
MODEL_KEYS = ("decoder", *(f.name for f in fields(VLMConfig)))
# The settings that say what a run trains on and how (two runs with equal values are the same experiment) are the
# training configuration's (`training.config.RUN_KEYS`, declared with its fields); each sidecar records them as
# `run_keys`, so that picking a run reads them from the runs themselves. A sidecar written before that has none:
# these were its settings then (the format of those files, not a second list to keep up to date).
RUN_KEYS_BEFORE_RECORDED = ("decoder", "encoder", "encoder_weights", "view", "num_visual_tokens", "bridge_hidden_dim",
                            "top_k", "data", "split", "tasks", "seed", "max_target_tokens", "epochs",
                            "batch_size", "grad_accum", "lr_adapter", "lr_qwen", "weight_decay", "warmup_steps",
                            "grad_clip")  # fmt: skip


def checkpoint_stem(epoch: int, encoder: str, top_k: int, step: int | None = None) -> str:
    """`{epoch}_{encoder}_top{K}` for the checkpoint that closes an epoch (the seed's name); `..._step{N}` for one
    written mid-epoch (--save-every, --max-steps, a signal), so that it never replaces the epoch's checkpoint."""
    stem = f"{epoch}_{encoder}_top{top_k}"
    return stem if step is None else f"{stem}_step{step}"


def save_checkpoint(
    directory: Path,
    stem: str,
    weights: dict[str, torch.Tensor],
    sidecar: dict[str, Any],
    state: dict[str, Any] | None,
) -> Path:
    """Write a checkpoint as one unit: its weights, training state and sidecar become visible together or not at all.

    1. Stage: each file is written in full, flushed to disk, under a temporary name (`.{name}.staged.tmp`), smallest
       first (sidecar, weights, state). A write the machine refuses (disk full, file-size limit, no permission, I/O
       error) raises the one-line `UserError` of `runtime.files.describe_write_error`, after removing every staged
       file: nothing of the new checkpoint is left, and nothing of the old ones was touched.
    2. Commit: the staged files are renamed to their names, the sidecar last. `list_checkpoints` counts a checkpoint
       only with its sidecar, so the sidecar's rename is the commit. When a checkpoint of the same name is replaced,
       its sidecar is removed first: between the renames the name is an incomplete checkpoint, never a mixed one.

    Every file carries the step (`global_step`: the sidecar's field, the weights' safetensors metadata, the training
    state's entry), and `read_checkpoint` / `read_training_state` refuse files of different steps. A process killed
    mid-save leaves staged files at worst; the next save in the folder removes them.
    """
    directory = Path(directory)
    step = sidecar.get("global_step")
    weights = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
    metadata = {"format": "pt"} if step is None else {"format": "pt", STEP_METADATA: str(step)}
    text = json.dumps(sidecar, indent=2, default=str).encode()
    final = {suffix: directory / f"{stem}{suffix}" for suffix in SUFFIXES}
    staged = {suffix: directory / f".{stem}{suffix}{STAGED}" for suffix in SUFFIXES}
    remove_stale_files(directory)

    def save_state(tmp: Path) -> None:
        with tmp.open("wb") as f:  # an open file keeps the OSError of a failed write in the exception chain
            torch.save(state, f)

    writes = [(".json", lambda p: p.write_bytes(text), len(text))]
    writes.append((".safetensors", lambda p: save_file(weights, p, metadata=metadata), tensor_bytes(weights)))
    if state is not None:
        writes.append((".state.pt", save_state, tensor_bytes(state)))
    try:
        for suffix, write, size in writes:
            _stage(staged[suffix], final[suffix], write, size)
        _commit(staged, final, with_state=state is not None)
    finally:
        for path in staged.values():
            path.unlink(missing_ok=True)
    return final[".safetensors"]


def _stage(staged: Path, final: Path, write, size: int) -> None:
    """`write` the file `final` will be, complete and on disk, under the name `staged`; a write the machine refuses is
    the one-line error of `describe_write_error`, naming `final` (the file the user knows) rather than `staged`."""
    try:
        write_atomically(staged, write, size=size)
    except UserError as exc:
        error = os_error_of(exc)  # the OSError behind write_atomically's line
        if error is None:
            raise
        raise describe_write_error(final, error, size) from exc


def _commit(staged: dict[str, Path], final: dict[str, Path], with_state: bool) -> None:
    """Rename the staged files to their names, the sidecar last (see `save_checkpoint`)."""
    try:
        final[".json"].unlink(missing_ok=True)  # an old checkpoint of this name is incomplete from here on
        os.replace(staged[".safetensors"], final[".safetensors"])
        if with_state:
            os.replace(staged[".state.pt"], final[".state.pt"])
        else:
            final[".state.pt"].unlink(missing_ok=True)  # an old checkpoint's state would not match these weights
        os.replace(staged[".json"], final[".json"])  # the commit
        _sync_directory(final[".json"].parent)
    except OSError as err:
        raise describe_write_error(final[".json"], err) from err


def _sync_directory(directory: Path) -> None:
    """Flush the directory's entries (the renames) to disk, where the file system allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_files(directory: Path) -> None:
    """Remove what a save killed mid-way left in a run folder: staged files and `write_atomically`'s temporary files
    of checkpoint names (`.{stem}...tmp`). One process writes a run's folder, so none of them is in use."""
    for path in Path(directory).glob(".*_top*.tmp"):
        path.unlink(missing_ok=True)


def tensor_bytes(value: Any) -> int:
    """The bytes of the tensors in `value` (nested dicts, lists and tuples): about the size of its file."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, Mapping):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    return 8


def run_directory(output_dir: str | Path, run_name: str) -> Path:
    return absolute(output_dir) / RUNS_DIR / run_name


def weights_step(weights: Path) -> int | None:
    """The step recorded in a checkpoint's weights (safetensors metadata; None for checkpoints written before it
    was recorded). Reads the header only. Raises `SafetensorError` or `OSError` for a file that is not readable."""
    with safe_open(str(weights), framework="pt") as f:
        value = (f.metadata() or {}).get(STEP_METADATA)
    return int(value) if value is not None else None


def _scan(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(weights path, sidecar) of the complete checkpoints in one folder, oldest first by training step.

    Complete: a readable sidecar (the commit marker), the weights beside it, and the same step in both (a checkpoint
    whose files come from two saves is left out: `read_checkpoint` would refuse it)."""
    found = []
    for sidecar in Path(directory).glob("*_top*.json"):
        weights = sidecar.with_suffix(".safetensors")
        try:
            meta = json.loads(sidecar.read_text())
            recorded = weights_step(weights)
            mtime = sidecar.stat().st_mtime
        except (OSError, ValueError, SafetensorError):
            continue
        if recorded is not None and recorded != meta.get("global_step"):
            continue
        found.append((meta.get("global_step", -1), mtime, weights, meta))
    return [(w, meta) for *_, w, meta in sorted(found, key=lambda x: x[:2])]


def complete_epoch(weights: Path) -> bool:
    """Whether a checkpoint closed its epoch (one saved mid-epoch by --save-every, --max-steps or a signal has no
    evaluation to show on a model card)."""
    try:
        return bool(json.loads(weights.with_suffix(".json").read_text()).get("complete_epoch"))
    except (OSError, json.JSONDecodeError):
        return False


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints (see `_scan`) in one folder, oldest first by training step."""
    return [weights for weights, _ in _scan(directory)]


def prune_checkpoints(directory: Path, keep: int) -> None:
    """After a new checkpoint is complete: delete the mid-epoch checkpoints it supersedes (a resume always takes the
    newest), then all but the `keep` newest of what is left, in this run's folder only."""
    found = _scan(directory)
    superseded = [w for w, meta in found[:-1] if meta.get("complete_epoch") is False]  # mid-epoch ones
    kept = [w for w, _ in found if w not in superseded]
    for weights in superseded + kept[:-keep]:
        for suffix in (".json", ".state.pt", ".safetensors"):  # sidecar first: a half-deleted one is ignored
            weights.with_suffix(suffix).unlink(missing_ok=True)


@dataclass(frozen=True)
class Run:
    """One run's folder and its complete checkpoints, with the settings of its newest one."""

    name: str
    directory: Path
    checkpoints: tuple[Path, ...]  # oldest first
    settings: dict[str, Any]  # the newest checkpoint's training configuration (its sidecar's train_config)
    run_keys: tuple[str, ...] = ()  # which of them say what the run trains (its sidecar's run_keys)

    @property
    def latest(self) -> Path:
        return self.checkpoints[-1]

    @property
    def modified(self) -> float:
        return max(p.with_suffix(".json").stat().st_mtime for p in self.checkpoints)


def read_run(directory: Path) -> Run | None:
    """The run in `directory`, with the settings of its newest checkpoint; None when it has no complete checkpoint."""
    checkpoints = list_checkpoints(directory)
    if not checkpoints:
        return None
    sidecar = json.loads(checkpoints[-1].with_suffix(".json").read_text())
    run_keys = tuple(sidecar.get("run_keys", RUN_KEYS_BEFORE_RECORDED))
    return Run(directory.name, directory, tuple(checkpoints), sidecar.get("train_config", {}), run_keys)


def list_runs(output_dir: str | Path) -> list[Run]:
    """The runs in `output_dir` that have a complete checkpoint, oldest first."""
    runs = [read_run(directory) for directory in sorted((absolute(output_dir) / RUNS_DIR).glob("*/"))]
    return sorted((run for run in runs if run is not None), key=lambda run: run.modified)


def differences(settings: Mapping[str, Any], other: Mapping[str, Any], keys: tuple[str, ...]) -> list[str]:
    """The keys of `keys` whose values differ, as `key (value, not other)`."""
    return [f"{k} ({settings.get(k)!r}, not {other.get(k)!r})" for k in keys if settings.get(k) != other.get(k)]


def find_run(
    output_dir: str | Path, want: Mapping[str, Any], what: str = "a checkpoint", flag: str | None = "--checkpoint"
) -> Run:
    """The newest run in `output_dir` whose settings equal `want` (a subset of their run settings, e.g. encoder and top_k).

    Raises `UserError` (one line) when no run matches, naming the nearest run's differences, and when several runs
    match but differ from each other in other settings, naming the candidates: picking one of those silently would
    evaluate, share or resume another experiment than the one meant. `flag` is how the command names a checkpoint
    by its path (`--checkpoint`, `--init-from`), for the advice in those lines; None for `--resume`, which continues
    a run by its name (`--run-name`) and never takes a path.
    """
    runs_dir = absolute(output_dir) / RUNS_DIR
    runs = list_runs(output_dir)
    matching = [run for run in runs if not differences(want, run.settings, tuple(want))]
    asked = ", ".join(f"{k}={v}" for k, v in want.items()) or "any settings"
    if not matching:
        if not runs:
            instead = (
                f"train one first or pass {flag} PATH"
                if flag
                else "start it without --resume (or with --resume auto --run-name NAME, which starts it when it has "
                "no checkpoint yet)"
            )
            raise UserError(f"no run with {what} in {runs_dir}; {instead}")
        nearest = min(reversed(runs), key=lambda run: len(differences(want, run.settings, tuple(want))))
        differ = differences(want, nearest.settings, tuple(want))
        if flag:
            instead = f"pass {flag} PATH, or the settings of the run you mean"
        elif not differences(want, nearest.settings, MODEL_KEYS):  # only what --resume --run-name may change
            instead = f"continue it with --resume --run-name {nearest.name}, or pass the settings of the run you mean"
        else:
            instead = "pass the settings of the run you mean, or start a new run (--init-from takes its weights)"
        raise UserError(
            f"no run in {runs_dir} matches {asked}; the nearest, {nearest.name}, differs in {', '.join(differ)}; "
            + instead
        )
    run_keys = tuple(dict.fromkeys(k for run in matching for k in run.run_keys))  # every run's, in order
    kinds = {json.dumps([run.settings.get(k) for k in run_keys], default=str) for run in matching}
    if len(kinds) > 1:
        newest = matching[-1]
        varied = [k for k in run_keys if len({json.dumps(r.settings.get(k), default=str) for r in matching}) > 1]
        candidates = "; ".join(
            f"{run.name} ({', '.join(f'{k}={run.settings.get(k)}' for k in varied)})" for run in reversed(matching)
        )
        name_one = f"{flag} {newest.latest}" if flag else f"--run-name {newest.name}"
        raise UserError(
            f"{len(matching)} runs in {runs_dir} match {asked} but differ in {', '.join(varied)}: "
            f"{candidates}; name one with {name_one} (or add the setting that tells them apart)"
        )
    return matching[-1]


def find_checkpoint(output_dir: str | Path, want: Mapping[str, Any] | None = None) -> Path:
    """The newest checkpoint of the newest run whose settings match `want` (see `find_run`)."""
    return find_run(output_dir, want or {}).latest


def is_hub_checkpoint(spec: str | Path) -> bool:
    return str(spec).startswith(HUB_PREFIX)


def local_checkpoint(spec: str | Path) -> Path:
    """The local `.safetensors` path of a checkpoint: `spec` itself, or for `hf:OWNER/NAME` the pushed checkpoint's
    weights in the hub cache (downloaded once; HF_TOKEN, HF_HOME and HF_HUB_OFFLINE are honoured)."""
    if not is_hub_checkpoint(spec):
        return Path(spec).expanduser()
    import hub  # the hub client is imported only when a hub checkpoint is asked for

    repo_id = str(spec)[len(HUB_PREFIX) :]
    hub.check_repo_id(repo_id, label=f"checkpoint {str(spec)!r}", form=f"{HUB_PREFIX}OWNER/NAME")
    snapshot = hub.download_repo(
        repo_id, [HUB_WEIGHTS, HUB_SIDECAR, f"{HUB_DECODER_DIR}/*"], what=str(spec), instead=f"DIR/{HUB_WEIGHTS}"
    )
    weights = snapshot / HUB_WEIGHTS
    if not (weights.is_file() and weights.with_suffix(".json").is_file()):
        raise UserError(
            f"{spec} has no {HUB_WEIGHTS} and {HUB_SIDECAR}: it is not a checkpoint pushed by train.py --push-to-hub"
        )
    return weights


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and sidecar of a checkpoint (`.safetensors` path, or `hf:OWNER/NAME`); a checkpoint whose weights and
    sidecar are of different steps is refused (`save_checkpoint`)."""
    path = local_checkpoint(path)
    sidecar = path.with_suffix(".json")
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    if not sidecar.exists():
        raise UserError(f"checkpoint {path.name} has no sidecar {sidecar.name}; it is incomplete or not one of ours")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            weights = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as e:
        raise UserError(f"checkpoint {path} is not a readable safetensors file ({e})") from None
    meta = json.loads(sidecar.read_text())
    if STEP_METADATA in metadata:
        _check_step(path, "weights file", int(metadata[STEP_METADATA]), meta)
    return weights, meta


def read_training_state(path: str | Path) -> dict[str, Any]:
    """The training state of a checkpoint (optimizer, schedule, RNG, data position), refused when it is not of the
    sidecar's step."""
    state_path = Path(path).with_suffix(".state.pt")
    if not state_path.exists():
        raise UserError(f"checkpoint {Path(path).name} has no training state {state_path.name}; cannot resume")
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    sidecar = Path(path).with_suffix(".json")
    if sidecar.exists() and "global_step" in state:
        _check_step(Path(path), "training state file", state["global_step"], json.loads(sidecar.read_text()))
    return state


def _check_step(path: Path, part: str, step: int, sidecar: dict[str, Any]) -> None:
    if sidecar.get("global_step") is not None and step != sidecar["global_step"]:
        raise UserError(
            f"checkpoint {path} is mixed: its {part} is of step {step} and its sidecar of step "
            f"{sidecar['global_step']} (files of two saves); use another checkpoint of the run"
        )
