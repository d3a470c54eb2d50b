"""The maps the pointing game scores, for many rows at once: the frozen encoder's features of many images, each
row's per-token maps by one method (`attention:CHOICE` or `occlusion:FILL`, BATCH rows a pass), and a word's map from
its tokens' maps.

A row is one image with a prompt and an output: a greedy caption or answer (`shapes.py`), or a caption fed to the
model as if it had written it (`flickr.py`). The games make the rows and score the words' maps.

Read next: `explain/pointing/shapes.py` (the game on the shapes set).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from .. import attention as attention_maps
from ..maps import token_grid
from ..occlusion import model_log_probs, occlusion_drops

BATCH = 64  # rows per teacher-forced pass


def features_of(model, images: Sequence[Image.Image]) -> torch.Tensor:
    """The frozen encoder's features of `images` in the model's view, BATCH at a time."""
    chunks = []
    for start in range(0, len(images), BATCH):
        pixels = torch.stack([model.encoder.preprocess(im) for im in images[start : start + BATCH]])
        chunks.append(model.encoder(pixels.to(model.encoder.device), view=model.config.view))
    return torch.cat(chunks)


def token_maps(
    model,
    method: str,
    images: Sequence[Image.Image],
    features: torch.Tensor,
    prompts: Sequence[list[int]],
    targets: Sequence[list[int]],
    grid: int,
) -> list[torch.Tensor]:
    """Each row's per-token map [T, cells] by `method` ("attention:CHOICE" or "occlusion:FILL"); row i reads
    images[i] / features[i] with prompts[i] and targets[i]."""
    kind, _, option = method.partition(":")
    maps: list[torch.Tensor] = []
    if kind == "attention":
        N = model.config.num_visual_tokens
        for start in range(0, len(targets), BATCH):
            rows = slice(start, start + BATCH)
            weights = attention_maps.attention_weights_per_row(model, features[rows], prompts[rows], targets[rows])
            maps += [
                attention_maps.token_maps(w, option, N, len(p), len(t))
                for w, p, t in zip(weights, prompts[rows], targets[rows], strict=True)
            ]
        return maps
    if kind == "occlusion":
        log_probs = model_log_probs(model, prompts, targets)
        return occlusion_drops(images, log_probs, grid, option, model.encoder.preprocess, batch_size=BATCH)
    raise ValueError(f"unknown method {method!r}; expected attention:CHOICE or occlusion:FILL")


def word_map(method: str, per_token: torch.Tensor, start: int, end: int) -> np.ndarray:
    """A word's map from its tokens' maps: attention averaged, log-probability drops added."""
    span = per_token[start:end]
    return (span.mean(0) if method.startswith("attention") else span.sum(0)).float().numpy()


def methods_for(model, methods: Sequence[str]) -> list[str]:
    """`methods` without the attention ones when the view gives the visual tokens no place (the pooled view)."""
    has_grid = model.config.view == "hidden" and token_grid(model.config.num_visual_tokens) is not None
    return [m for m in methods if has_grid or not m.startswith("attention")]
