"""Rebuild a trained model from a checkpoint alone: `load_trained(path, device) -> (model, tokenizer, sidecar)`.

`path` is a `.safetensors` file or `hf:OWNER/NAME`, a checkpoint pushed to the Hugging Face Hub with `python train.py
--push-to-hub` (downloaded into the hub cache by `checkpoints.store.local_checkpoint`).

A checkpoint holds only what trained (the bridge and the decoder's top K blocks); its `.json` sidecar names
everything else (see `checkpoints/store.py`):

    sidecar["decoder"]    {"source": hub id or directory, "config": the decoder's Qwen3Config}
    sidecar["tokenizer"]  {"source": ..., "eos_id": ..., "pad_id": ...}
    sidecar["model"]      the VLMConfig: encoder, encoder_weights, view, num_visual_tokens, top_k, bridge width

So restoring is: load the frozen decoder and its tokenizer from their source, build the frozen encoder, assemble
the VisionLanguageModel exactly as configured, and copy the trained weights in. Each step checks that what it
rebuilt is what the checkpoint was trained with (the decoder's config, the tokenizer's end-of-text id, every
trained tensor's name and shape), and says which part differs when it is not, in one line.

Where the frozen decoder comes from, first match wins:
1. `decoder=DIR` (caption.py `--decoder DIR`): a local copy the user points at; its config must still match.
2. A decoder carried with the checkpoint: a pushed repo holds a small local decoder (the demo's) in `decoder/`, and
   the sidecar says so (`sidecar["decoder"]["bundled"]`).
3. The recorded source: a hub id (fetched, or read from the hub cache) or a local directory. The offline demo saves
   its tiny decoder in the output folder (`demo_decoder_seed{seed}/`, beside `runs/`); when that folder was moved or
   copied, the recorded absolute path no longer exists, and a folder of the same name in the moved output folder (or
   beside a checkpoint of the old flat layout) is used.
A local decoder or encoder-weights file that is not on this machine is one line naming it and how to point at a copy.

Read next: `captioning/captioner.py` (the model at work on your images), `checkpoints/share.py` (sharing a checkpoint).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from bridge import VisionLanguageModel, VLMConfig, build_vlm
from checkpoints.store import RUNS_DIR, local_checkpoint, read_checkpoint
from errors import UserError
from weights_loader import TextTokenizer, load_qwen3, load_tokenizer, resolve_checkpoint

SIDECAR_KEYS = ("model", "decoder", "tokenizer")
WEIGHT_FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
POINT_AT_A_COPY = "point at a local copy with caption.py --{flag} PATH, or load_trained(..., {arg}=PATH) in Python"


def decoder_source(sidecar: dict[str, Any], checkpoint: Path) -> str:
    """The decoder's hub id or directory: the one carried with a pushed checkpoint, else the recorded one (a moved
    demo decoder is looked for in the moved folder)."""
    bundled = sidecar["decoder"].get("bundled")
    if bundled and (checkpoint.parent / bundled).is_dir():
        return str(checkpoint.parent / bundled)
    source = str(sidecar["decoder"]["source"])
    recorded = Path(source)
    if recorded.is_absolute() and not recorded.exists():
        # A moved folder: the demo decoder sits in the output folder ({output_dir}/runs/{run}/ holds the checkpoint),
        # or beside a checkpoint of the old flat layout.
        folders = [checkpoint.parent, *([checkpoint.parents[2]] if checkpoint.parent.parent.name == RUNS_DIR else [])]
        for folder in folders:
            if (folder / recorded.name).is_dir():
                return str(folder / recorded.name)
    return source


def is_local_path(source: str) -> bool:
    """A directory or file path rather than a hub repo id or a library's weights tag (those never start so)."""
    return source.startswith(("/", "~", "./", "../")) or Path(source).suffix in WEIGHT_FILE_SUFFIXES


def check_local_sources(decoder: str, encoder_weights: str, checkpoint: Path) -> None:
    """A local decoder directory or encoder weights file named in the sidecar but not on this machine: one line
    naming it and how to point at a copy (a hub id that cannot be fetched says so where it is fetched)."""
    if is_local_path(decoder) and not Path(decoder).expanduser().is_dir():
        raise UserError(
            f"the decoder {decoder} that {checkpoint.name} was trained with is not on this machine (a local folder "
            f"where it was trained); {POINT_AT_A_COPY.format(flag='decoder', arg='decoder')}, or put the folder "
            f"in the output folder as {Path(decoder).name}/"
        )
    if encoder_weights not in ("none", "default") and is_local_path(encoder_weights):
        if not Path(encoder_weights).expanduser().is_file():
            raise UserError(
                f"the encoder weights {encoder_weights} that {checkpoint.name} was trained with are not on this "
                f"machine (a local file where it was trained); "
                + POINT_AT_A_COPY.format(flag="encoder-weights", arg="encoder_weights")
            )


def read_sidecar(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """`read_checkpoint`, plus a one-line error for a sidecar that is not JSON or lacks what restoring needs."""
    try:
        weights, sidecar = read_checkpoint(path)
    except json.JSONDecodeError as e:
        raise UserError(
            f"the sidecar {path.with_suffix('.json')} is not valid JSON ({e.msg}, line {e.lineno})"
        ) from None
    missing = [key for key in SIDECAR_KEYS if not isinstance(sidecar.get(key), dict)]
    if missing:
        raise UserError(
            f"the sidecar {path.with_suffix('.json').name} has no {', '.join(missing)}: not a checkpoint of train.py"
        )
    return weights, sidecar


def load_trained(
    checkpoint: str | Path,
    device: torch.device | str = "cpu",
    *,
    decoder: str | Path | None = None,
    encoder_weights: str | Path | None = None,
) -> tuple[VisionLanguageModel, TextTokenizer, dict[str, Any]]:
    """The trained model a checkpoint describes (in eval mode, on `device`), its tokenizer, and the sidecar.

    `checkpoint`: a `.safetensors` path or `hf:OWNER/NAME`. `decoder` / `encoder_weights`: local copies to use
    instead of the frozen parts the sidecar names (a decoder that differs from the trained one is refused).

        model, tokenizer, sidecar = load_trained("hf:OWNER/NAME")
    """
    path = local_checkpoint(checkpoint)
    weights, sidecar = read_sidecar(path)
    source = str(decoder) if decoder is not None else decoder_source(sidecar, path)
    if encoder_weights is not None:
        sidecar["model"] = {**sidecar["model"], "encoder_weights": str(encoder_weights)}
    check_local_sources(source, str(sidecar["model"].get("encoder_weights", "none")), path)
    decoder_dir = resolve_checkpoint(source)  # a directory, or the hub download (cached) of a repo id
    decoder_model, tokenizer = load_qwen3(decoder_dir, device=device), load_tokenizer(decoder_dir)
    here, trained = decoder_model.config.to_dict(), sidecar["decoder"]["config"]
    if here != trained:
        differ = ", ".join(
            f"{k} {here.get(k)!r}, not {trained.get(k)!r}" for k in here if here.get(k) != trained.get(k)
        )
        raise UserError(
            f"the decoder at {source} is not the one {path.name} was trained with (its config differs: {differ})"
        )
    if tokenizer.eos_id != sidecar["tokenizer"].get("eos_id", tokenizer.eos_id):
        raise UserError(
            f"the tokenizer at {source} is not the one {path.name} was trained with (end-of-text id differs)"
        )
    try:
        config = VLMConfig(**sidecar["model"])
    except TypeError as e:  # an unknown or missing field
        raise UserError(f"the sidecar of {path.name} has an unexpected model section ({e})") from None
    model = build_vlm(config, decoder_model, device)
    model.load_trainable_state_dict(weights)  # names and shapes must match the sidecar's model exactly
    return model.eval(), tokenizer, sidecar
