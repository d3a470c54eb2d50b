"""Checkpoints: only what trains, written atomically, enough to resume exactly.

Each checkpoint is three files in `OUTPUT_DIR_MODELS`, named after the epoch, the encoder and K:

    3_vit_top3.safetensors     bridge + top-K decoder blocks (megabytes, not the 0.6B decoder)
    3_vit_top3.json            sidecar: configuration, decoder/encoder sources, tokenizer, step, metrics
    3_vit_top3.state.pt        training state: optimizer, schedule, RNG states, data position

The frozen parts are not saved: they are rebuilt from their sources (the hub's Qwen3, timm/open_clip weights), which
the sidecar names. Weights are safetensors (no pickle); the training state holds only tensors and plain Python
values and is read back with `torch.load(weights_only=True)`.

A checkpoint shared on the Hugging Face Hub (`python train.py --push-to-hub`, `training/share.py`) is a model repo
holding `checkpoint.safetensors`, `checkpoint.json` and a model card; `hf:OWNER/NAME` names it wherever a checkpoint
path is accepted (`--checkpoint`, `--init-from`, `load_trained`), and `local_checkpoint` downloads it into the hub
cache and returns the local path of its weights.

Every file is written to a temporary name in the same directory and then renamed (`os.replace` is atomic on POSIX):
a crash mid-write leaves the previous checkpoint intact. Old checkpoints are deleted only after the new one is
complete, and the sidecar is written last, so a checkpoint without its sidecar is never picked up.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from errors import UserError

HUB_PREFIX = "hf:"  # --checkpoint hf:OWNER/NAME: a checkpoint pushed to the Hugging Face Hub
HUB_WEIGHTS = "checkpoint.safetensors"  # the file names of a pushed checkpoint in its repo
HUB_SIDECAR = "checkpoint.json"
HUB_DECODER_DIR = "decoder"  # a small local decoder carried in the repo (the demo's), see training/share.py


def checkpoint_stem(epoch: int, encoder: str, top_k: int) -> str:
    return f"{epoch}_{encoder}_top{top_k}"


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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


def list_checkpoints(directory: Path, encoder: str | None = None, top_k: int | None = None) -> list[Path]:
    """Complete checkpoints (with a sidecar) in `directory`, oldest first by training step."""
    found = []
    for sidecar in Path(directory).glob("*_top*.json"):
        weights = sidecar.with_suffix(".safetensors")
        if not weights.exists():
            continue
        try:
            meta = json.loads(sidecar.read_text())
        except json.JSONDecodeError:
            continue
        model = meta.get("model", {})
        if encoder is not None and model.get("encoder") != encoder:
            continue
        if top_k is not None and model.get("top_k") != top_k:
            continue
        found.append((meta.get("global_step", -1), sidecar.stat().st_mtime, weights))
    return [w for *_, w in sorted(found)]


def latest_checkpoint(directory: Path, encoder: str | None = None, top_k: int | None = None) -> Path:
    found = list_checkpoints(directory, encoder, top_k)
    if not found:
        what = f" for encoder={encoder}, top_k={top_k}" if encoder is not None else ""
        raise UserError(f"no checkpoint{what} in {directory}; train one first or pass --checkpoint PATH")
    return found[-1]


def prune_checkpoints(directory: Path, keep: int, encoder: str, top_k: int) -> None:
    """Delete all but the `keep` newest checkpoints of this encoder and K (after a new one is complete)."""
    for weights in list_checkpoints(directory, encoder, top_k)[:-keep]:
        for suffix in (".json", ".state.pt", ".safetensors"):  # sidecar first: a half-deleted one is ignored
            weights.with_suffix(suffix).unlink(missing_ok=True)


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
