"""Rebuild a trained model from a checkpoint alone: `load_trained(path, device) -> (model, tokenizer, sidecar)`.

A checkpoint holds only what trained (the bridge and the decoder's top K blocks); its `.json` sidecar names
everything else (see `training/checkpoint.py`):

    sidecar["decoder"]    {"source": hub id or directory, "config": the decoder's Qwen3Config}
    sidecar["tokenizer"]  {"source": ..., "eos_id": ..., "pad_id": ...}
    sidecar["model"]      the VLMConfig: encoder, encoder_weights, view, num_visual_tokens, top_k, bridge width

So restoring is: load the frozen decoder and its tokenizer from their source, build the frozen encoder, assemble
the VisionLanguageModel exactly as configured, and copy the trained weights in. Each step checks that what it
rebuilt is what the checkpoint was trained with (the decoder's config, the tokenizer's end-of-text id, every
trained tensor's name and shape), and says which part differs when it is not, in one line.

The offline demo saves its tiny decoder next to its checkpoints (`demo_decoder_seed{seed}/`). When a folder of
checkpoints was moved or copied, the decoder's recorded absolute path no longer exists; a folder of the same name
beside the checkpoint is then used instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from bridge import VisionLanguageModel, VLMConfig
from errors import UserError
from training.checkpoint import read_checkpoint
from vision import build_encoder
from weights_loader import TextTokenizer, load_qwen3, load_tokenizer, resolve_checkpoint

SIDECAR_KEYS = ("model", "decoder", "tokenizer")


def decoder_source(sidecar: dict[str, Any], checkpoint: Path) -> str:
    """The decoder's hub id or directory; a moved demo decoder is looked for beside the checkpoint."""
    source = str(sidecar["decoder"]["source"])
    recorded = Path(source)
    if recorded.is_absolute() and not recorded.exists() and (checkpoint.parent / recorded.name).is_dir():
        return str(checkpoint.parent / recorded.name)
    return source


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
    checkpoint: str | Path, device: torch.device | str = "cpu"
) -> tuple[VisionLanguageModel, TextTokenizer, dict[str, Any]]:
    """The trained model a checkpoint describes (in eval mode, on `device`), its tokenizer, and the sidecar."""
    path = Path(checkpoint)
    weights, sidecar = read_sidecar(path)
    source = decoder_source(sidecar, path)
    decoder_dir = resolve_checkpoint(source)  # a directory, or the hub download (cached) of a repo id
    decoder, tokenizer = load_qwen3(decoder_dir, device=device), load_tokenizer(decoder_dir)
    if decoder.config.to_dict() != sidecar["decoder"]["config"]:
        raise UserError(f"the decoder at {source} is not the one {path.name} was trained with (its config differs)")
    if tokenizer.eos_id != sidecar["tokenizer"].get("eos_id", tokenizer.eos_id):
        raise UserError(
            f"the tokenizer at {source} is not the one {path.name} was trained with (end-of-text id differs)"
        )
    try:
        config = VLMConfig(**sidecar["model"])
    except TypeError as e:  # an unknown or missing field
        raise UserError(f"the sidecar of {path.name} has an unexpected model section ({e})") from None
    encoder = build_encoder(config.encoder, config.encoder_weights)
    model = VisionLanguageModel(config, encoder, decoder).to(device)
    model.load_trainable_state_dict(weights)  # names and shapes must match the sidecar's model exactly
    return model.eval(), tokenizer, sidecar
