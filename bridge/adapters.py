"""The bridge: the only new network in the system. It turns image features into "words" the decoder can read.

A frozen vision encoder speaks its own language (a 768-d CLS vector, or 197 tokens of width 768); the decoder
reads 1024-d token embeddings. The bridge learns the translation. Its output is a short sequence of *visual
tokens*, vectors of the decoder's width that are prepended to the text as if they were embeddings of words.

Two designs, for the encoder's two views:

- `PooledAdapter` (the project's one-pager): one pooled embedding [B, in_dim] -> a 2-layer MLP -> N visual tokens
  [B, N, d]. The MLP's second layer produces all N tokens at once (N * d outputs), so each token can carry a
  different aspect of the image. This is the "prefix" idea of ClipCap (Mokady et al. 2021,
  https://arxiv.org/abs/2111.09734).
- `HiddenStateProjector` (LLaVA-style): every encoder token [B, T, in_dim] -> a 2-layer MLP applied per token ->
  [B, T, d], optionally pooled first to N tokens. For a ViT's square patch grid the pooling is 2-D (average over
  neighbouring patches, so "left" stays left); otherwise it pools along the sequence. LLaVA-1.5 uses exactly this
  MLP (Liu et al. 2023, https://arxiv.org/abs/2310.03744); nanoVLM shrinks the token count by pixel shuffle.

Both end with an RMS normalisation whose gain starts at the RMS of the decoder's token embeddings: at
initialisation the visual tokens have the same scale as word embeddings, so the frozen decoder neither ignores
them (too small) nor is swamped by them (too large), whatever the encoder's feature scale.

Read next: `bridge/vlm.py` (where the visual tokens meet the prompt, the target and the loss).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tiny_decoder.model import RMSNorm


class _OutputScale(RMSNorm):
    """RMS-normalise each visual token, then scale it to `target_rms` (learnable, per channel)."""

    def __init__(self, dim: int, target_rms: float) -> None:
        super().__init__(dim, eps=1e-6)
        with torch.no_grad():
            self.weight.fill_(target_rms)


class PooledAdapter(nn.Module):
    """Pooled embedding [B, in_dim] -> Linear -> GELU -> Linear -> N visual tokens [B, N, out_dim]."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_tokens: int = 16,
        hidden_dim: int | None = None,
        target_rms: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_tokens, self.out_dim = num_tokens, out_dim
        hidden_dim = hidden_dim or out_dim
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, num_tokens * out_dim)
        self.norm = _OutputScale(out_dim, target_rms)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.fc2(F.gelu(self.fc1(features)))  # [B, N * out_dim]
        x = x.view(features.shape[0], self.num_tokens, self.out_dim)  # [B, N, out_dim]
        return self.norm(x)


class HiddenStateProjector(nn.Module):
    """Encoder tokens [B, T, in_dim] -> (optional pooling to N tokens) -> per-token MLP -> [B, N or T, out_dim]."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_tokens: int | None = 16,
        hidden_dim: int | None = None,
        target_rms: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        hidden_dim = hidden_dim or out_dim
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, out_dim)
        self.norm = _OutputScale(out_dim, target_rms)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """Average neighbouring tokens down to `num_tokens`; keeps the 2-D layout of a square patch grid."""
        B, T, D = tokens.shape
        N = self.num_tokens
        if N is None or N >= T:
            return tokens
        grid, side = math.isqrt(T - 1), math.isqrt(N)
        if grid * grid == T - 1 and side * side == N:  # a CLS token + a square patch grid, pooled to a square grid
            patches = tokens[:, 1:].transpose(1, 2).reshape(B, D, grid, grid)  # [B, D, g, g]
            pooled = F.adaptive_avg_pool2d(patches, side)  # [B, D, s, s]
            return pooled.flatten(2).transpose(1, 2)  # [B, s*s, D], row-major: top-left first
        return F.adaptive_avg_pool1d(tokens.transpose(1, 2), N).transpose(1, 2)  # [B, N, D]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.pool(tokens)  # [B, N, in_dim]
        return self.norm(self.fc2(F.gelu(self.fc1(x))))  # [B, N, out_dim]


def build_bridge(
    view: str,
    in_dim: int,
    out_dim: int,
    num_tokens: int = 16,
    target_rms: float = 1.0,
    hidden_dim: int | None = None,
) -> nn.Module:
    """The adapter for the encoder's `view`: "pooled" -> PooledAdapter, "hidden" -> HiddenStateProjector."""
    if view == "pooled":
        return PooledAdapter(in_dim, out_dim, num_tokens, hidden_dim, target_rms)
    if view == "hidden":
        return HiddenStateProjector(in_dim, out_dim, num_tokens, hidden_dim, target_rms)
    raise ValueError(f"unknown view {view!r}; expected 'pooled' or 'hidden'")
