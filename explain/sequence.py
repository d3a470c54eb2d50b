"""The teacher-forced sequence both methods read: [visual tokens][prompt][output], one row per image.

To explain words the model already wrote (or a human caption, `explain/scoring.py`), they are fed back in, as in
training: one forward pass over the whole sequence gives every position's attention and next-token probabilities.
Rows are right-padded and need no mask: attention is causal, so no real position sees the padding after it
(`VisionLanguageModel.forward` relies on the same fact).

Read next: `explain/attention.py`, `explain/occlusion.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from errors import UserError


def check_explainable(model) -> None:
    """The maps read the visual tokens at positions 0..N-1 of the sequence; a model trained with a lead token
    (`--lead-token`: <|endoftext|> at position 0) has them one later, which the maps do not handle yet."""
    if model.config.lead_token:
        raise UserError(
            "explanations read the visual tokens at the start of the sequence; this checkpoint was trained with "
            "--lead-token, which puts <|endoftext|> there: explain a model trained without it"
        )


def teacher_forced(
    model, features: torch.Tensor, prompts: Sequence[list[int]], targets: Sequence[list[int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings [B, N + W, d], token ids [B, W]) of [visual][prompt][target] per row, right-padded with id 0."""
    rows = [list(p) + list(t) for p, t in zip(prompts, targets, strict=True)]
    width = max(len(r) for r in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long, device=features.device)  # [B, W]
    for b, row in enumerate(rows):
        input_ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
    return model.sequence_embeddings(input_ids, features=features), input_ids  # [B, N + W, d], [B, W]
