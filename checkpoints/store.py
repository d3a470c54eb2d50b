"""Checkpoints: only what trains, written atomically, enough to resume exactly, in a folder per run.

Every run has its own folder, `{output_dir}/runs/{run_name}/`, beside its `metrics.json` and W&B files. A
checkpoint there is three files named after the epoch, the encoder and K:

    runs/vit_top3_20261206-101500/
        3_vit_top3.safetensors     bridge + top-K decoder blocks (megabytes, not the 0.6B decoder)
        3_vit_top3.json            sidecar: configuration, decoder/encoder sources, tokenizer, step, metrics
        3_vit_top3.state.pt        training state: optimizer, schedule, RNG states, data position

so two runs in one output folder never overwrite, prune or resume each other's files. `find_run` picks a run by its
settings (`RUN_KEYS`): the newest run whose settings match what the command asked for, and one line naming the
candidates when several runs match with different settings. A checkpoint written in the old flat layout (straight
in `output_dir`) still loads by its explicit path.

The frozen parts are not saved: they are rebuilt from their sources (the hub's Qwen3, timm/open_clip weights), which
the sidecar names (`checkpoints/restore.py`). Weights are safetensors (no pickle); the training state holds only
tensors and plain Python values and is read back with `torch.load(weights_only=True)`.

A checkpoint shared on the Hugging Face Hub (`python train.py --push-to-hub`, `checkpoints/share.py`) is a model
repo holding `checkpoint.safetensors`, `checkpoint.json` and a model card; `hf:OWNER/NAME` names it wherever a
checkpoint path is accepted (`--checkpoint`, `--init-from`, `load_trained`), and `local_checkpoint` downloads it into
the hub cache and returns the local path of its weights.

Every file is written to a temporary name in the same directory and then renamed (`runtime/files.py`): a crash
mid-write leaves the previous checkpoint intact. Old checkpoints are deleted only after the new one is complete, and
the sidecar is written last, so a checkpoint without its sidecar is never picked up.

Read next: `checkpoints/restore.py` (a trained model from a checkpoint alone), `checkpoints/share.py` (the hub).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from errors import UserError
from runtime.files import write_atomically

HUB_PREFIX = "hf:"  # --checkpoint hf:OWNER/NAME: a checkpoint pushed to the Hugging Face Hub
HUB_WEIGHTS = "checkpoint.safetensors"  # the file names of a pushed checkpoint in its repo
HUB_SIDECAR = "checkpoint.json"
HUB_DECODER_DIR = "decoder"  # a small local decoder carried in the repo (the demo's), see checkpoints/share.py
DEFAULT_OUTPUT_DIR = "../.data/models"  # --output-dir / OUTPUT_DIR_MODELS when unset (train.py and caption.py)
RUNS_DIR = "runs"  # {output_dir}/runs/{run_name}/: one run's checkpoints, metrics.json and W&B files

# The settings that make a model: a checkpoint resumed or loaded into a model with other values does not fit it (or,
# worse, fits its tensor shapes and silently means something else: 4 or 9 hidden-view tokens have the same bridge).
MODEL_KEYS = ("decoder", "encoder", "encoder_weights", "view", "num_visual_tokens", "bridge_hidden_dim", "top_k")
# ... and those that say what a run trains on and how: two runs with equal values are the same experiment.
RUN_KEYS = (*MODEL_KEYS, "data", "split", "tasks", "seed", "max_target_tokens", "epochs", "batch_size", "grad_accum",
            "lr_adapter", "lr_qwen", "weight_decay", "warmup_steps", "grad_clip")  # fmt: skip


def checkpoint_stem(epoch: int, encoder: str, top_k: int) -> str:
    return f"{epoch}_{encoder}_top{top_k}"


def save_checkpoint(
    directory: Path,
    stem: str,
    weights: dict[str, torch.Tensor],
    sidecar: dict[str, Any],
    state: dict[str, Any] | None,
) -> Path:
    """Write weights, training state, then the sidecar (last: it marks the checkpoint complete)."""
    directory = Path(directory)
    weights = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
    write_atomically(directory / f"{stem}.safetensors", lambda p: save_file(weights, p, metadata={"format": "pt"}))
    if state is not None:
        write_atomically(directory / f"{stem}.state.pt", lambda p: torch.save(state, p))
    write_atomically(directory / f"{stem}.json", lambda p: p.write_text(json.dumps(sidecar, indent=2, default=str)))
    return directory / f"{stem}.safetensors"


def run_directory(output_dir: str | Path, run_name: str) -> Path:
    return Path(output_dir).expanduser() / RUNS_DIR / run_name


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints (with a readable sidecar) in one folder, oldest first by training step."""
    found = []
    for sidecar in Path(directory).glob("*_top*.json"):
        weights = sidecar.with_suffix(".safetensors")
        if not weights.exists():
            continue
        try:
            meta = json.loads(sidecar.read_text())
        except json.JSONDecodeError:
            continue
        found.append((meta.get("global_step", -1), sidecar.stat().st_mtime, weights))
    return [w for *_, w in sorted(found)]


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Delete all but the `keep` newest checkpoints of one run's folder (after a new one is complete)."""
    for weights in list_checkpoints(directory)[:-keep]:
        for suffix in (".json", ".state.pt", ".safetensors"):  # sidecar first: a half-deleted one is ignored
            weights.with_suffix(suffix).unlink(missing_ok=True)


@dataclass(frozen=True)
class Run:
    """One run's folder and its complete checkpoints, with the settings of its newest one."""

    name: str
    directory: Path
    checkpoints: tuple[Path, ...]  # oldest first
    settings: dict[str, Any]  # the newest checkpoint's training configuration (its sidecar's train_config)

    @property
    def latest(self) -> Path:
        return self.checkpoints[-1]

    @property
    def modified(self) -> float:
        return max(p.with_suffix(".json").stat().st_mtime for p in self.checkpoints)


def list_runs(output_dir: str | Path) -> list[Run]:
    """The runs in `output_dir` that have a complete checkpoint, oldest first."""
    runs = []
    for directory in sorted((Path(output_dir).expanduser() / RUNS_DIR).glob("*/")):
        checkpoints = list_checkpoints(directory)
        if checkpoints:
            settings = json.loads(checkpoints[-1].with_suffix(".json").read_text()).get("train_config", {})
            runs.append(Run(directory.name, directory, tuple(checkpoints), settings))
    return sorted(runs, key=lambda run: run.modified)


def differences(settings: Mapping[str, Any], other: Mapping[str, Any], keys: tuple[str, ...] = RUN_KEYS) -> list[str]:
    """The keys of `keys` whose values differ, as `key (value, not other)`."""
    return [f"{k} ({settings.get(k)!r}, not {other.get(k)!r})" for k in keys if settings.get(k) != other.get(k)]


def find_run(output_dir: str | Path, want: Mapping[str, Any], what: str = "a checkpoint") -> Run:
    """The newest run in `output_dir` whose settings equal `want` (a subset of `RUN_KEYS`, e.g. encoder and top_k).

    Raises `UserError` (one line) when no run matches, naming the nearest run's differences, and when several runs
    match but differ from each other in other settings, naming the candidates: picking one of those silently would
    evaluate, share or resume another experiment than the one meant.
    """
    output_dir = Path(output_dir).expanduser()
    runs = list_runs(output_dir)
    matching = [run for run in runs if not differences(want, run.settings, tuple(want))]
    asked = ", ".join(f"{k}={v}" for k, v in want.items()) or "any settings"
    if not matching:
        if not runs:
            raise UserError(f"no run with {what} in {output_dir / RUNS_DIR}; train one first or pass --checkpoint PATH")
        nearest = min(reversed(runs), key=lambda run: len(differences(want, run.settings, tuple(want))))
        raise UserError(
            f"no run in {output_dir / RUNS_DIR} matches {asked}; the nearest, {nearest.name}, differs in "
            + ", ".join(differences(want, nearest.settings, tuple(want)))
            + "; pass --checkpoint PATH, or the settings of the run you mean"
        )
    kinds = {json.dumps([run.settings.get(k) for k in RUN_KEYS], default=str) for run in matching}
    if len(kinds) > 1:
        newest = matching[-1]
        varied = [k for k in RUN_KEYS if len({json.dumps(r.settings.get(k), default=str) for r in matching}) > 1]
        candidates = "; ".join(
            f"{run.name} ({', '.join(f'{k}={run.settings.get(k)}' for k in varied)})" for run in reversed(matching)
        )
        raise UserError(
            f"{len(matching)} runs in {output_dir / RUNS_DIR} match {asked} but differ in {', '.join(varied)}: "
            f"{candidates}; name one with --checkpoint {newest.latest} (or add the setting that tells them apart)"
        )
    return matching[-1]


def find_checkpoint(output_dir: str | Path, want: Mapping[str, Any] | None = None) -> Path:
    """The newest checkpoint of the newest run whose settings match `want` (see `find_run`)."""
    return find_run(output_dir, want or {}).latest


def checkpoint_path(spec: str | Path) -> Path:
    """A checkpoint named on a command line: `hf:OWNER/NAME` (its local copy, downloaded once), a `.safetensors`
    path, or its `.json` sidecar's path."""
    if is_hub_checkpoint(spec):
        return local_checkpoint(spec)
    path = Path(spec).expanduser()
    path = path.with_suffix(".safetensors") if path.suffix == ".json" else path
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    return path


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
    """Weights and sidecar of a checkpoint (`.safetensors` path, or `hf:OWNER/NAME`)."""
    path = local_checkpoint(path)
    sidecar = path.with_suffix(".json")
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    if not sidecar.exists():
        raise UserError(f"checkpoint {path.name} has no sidecar {sidecar.name}; it is incomplete or not one of ours")
    try:
        weights = load_file(path)
    except Exception as e:
        raise UserError(f"checkpoint {path} is not a readable safetensors file ({e})") from None
    return weights, json.loads(sidecar.read_text())


def read_training_state(path: str | Path) -> dict[str, Any]:
    state_path = Path(path).with_suffix(".state.pt")
    if not state_path.exists():
        raise UserError(f"checkpoint {Path(path).name} has no training state {state_path.name}; cannot resume")
    return torch.load(state_path, map_location="cpu", weights_only=True)
