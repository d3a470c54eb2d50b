"""Attention maps: how much the position that writes a word attends to each visual token.

The decoder reads one sequence, [v_1 ... v_N][prompt][output]. Position t predicts token t + 1, so the word at
position p is *chosen* by the query at position p - 1: its attention weights over v_1 ... v_N, one number per visual
token, are that word's attention map. With the hidden view each visual token is one cell of the encoder's patch
grid (`explain/maps.py`), so the N numbers form a map over the image; with the pooled view no token has a place
and there is no attention map (use occlusion, `explain/occlusion.py`).

The weights come from the decoder itself: `tiny_decoder.model.recording_attention` records softmax(q kᵀ / √d) in
every layer during one teacher-forced forward pass of [visual][prompt][output] (and computes each layer's output
from them, equal to the fused kernel's up to rounding).
That gives L layers × H heads of weights per word, and a map needs one number per token. The choices:

- `last`: the last layer, mean over heads. The layer closest to the output, and often the wrong one: by the last
  layer the visual tokens' content has already been copied into the text positions (the prompt, the words before),
  so the last layer can read it from there and its attention to the visual tokens says little about where the
  information came from. On the demo it points at the named shape less often than a random pick among the cells
  that hold a shape (EXPERIMENTS.md, section 6).
- `mean`: mean over all layers and heads.
- `layer:I`: one layer, mean over heads (which layer reads the image is a property of the trained model).
- `head:L.H`: one head of one layer. Heads specialise; `python -m explain.pointing --best-head` picks the head that
  points right most often on the validation split and scores it on the test split.
- `rollout` (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers", https://arxiv.org/abs/2005.00928):
  follow the attention through the residual stream. Each layer's mean-over-heads weights W_l become
  A_l = (W_l + I) / 2 (half of each position's output is the position itself, through the residual connection), and
  the flow from the word's query back to the input is the product A_L ··· A_1. It credits a visual token also for
  what reached the word through the prompt and the earlier words.

Attention is not explanation (Jain & Wallace 2019, https://arxiv.org/abs/1902.10186; Wiegreffe & Pinter 2019,
https://arxiv.org/abs/1908.04626): a weight says where a head read from, not what the value it read did to the
output. The pointing game (`explain/scoring.py`) measures which choice points at the object the word names;
occlusion measures the effect directly. notebooks/06_where_it_looks.ipynb compares them.

Read next: `explain/occlusion.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tiny_decoder.model import recording_attention

from .sequence import teacher_forced

# The reductions `reduce` knows, besides "layer:I" and "head:L.H". `DEFAULT` is the one caption.py --explain draws:
# of the choices that need no head selection on labelled data, the one that pointed right most often on the demo
# (0.71; EXPERIMENTS.md, section 6).
CHOICES = ("last", "mean", "rollout")
DEFAULT = "rollout"


@torch.no_grad()
def attention_weights_per_row(
    model, features: torch.Tensor, prompts: Sequence[list[int]], targets: Sequence[list[int]]
) -> list[torch.Tensor]:
    """Every layer's attention weights for [visual][prompt][target] of each row: [L, H, S, S] each (S = N + P + T).

    One teacher-forced forward pass for all rows: right-padded, so no mask is needed (causal attention never lets a
    real position see the padding after it), as in training (`VisionLanguageModel.forward`).
    """
    embeds, _ = teacher_forced(model, features, prompts, targets)  # [B, N + W, d]
    with recording_attention(model.decoder) as recorded:
        model.decoder.hidden_states(inputs_embeds=embeds)
    weights = torch.stack([layer[0] for layer in recorded], dim=1)  # [B, L, H, S, S]
    lengths = [model.config.num_visual_tokens + len(p) + len(t) for p, t in zip(prompts, targets, strict=True)]
    return [weights[b, :, :, :S, :S].cpu() for b, S in enumerate(lengths)]


def rollout(weights: torch.Tensor) -> torch.Tensor:
    """Attention rollout [S, S] from one row's weights [L, H, S, S]: (W_L + I)/2 ··· (W_1 + I)/2, heads averaged."""
    S = weights.shape[-1]
    eye = torch.eye(S, dtype=weights.dtype)
    flow = eye
    for layer in weights:  # bottom to top
        flow = ((layer.mean(0) + eye) / 2) @ flow
    return flow


def reduce(weights: torch.Tensor, choice: str) -> torch.Tensor:
    """One row's weights [L, H, S, S] -> one [S, S] matrix of query-to-key credit, by `choice` (see the docstring)."""
    if choice == "last":
        return weights[-1].mean(0)
    if choice == "mean":
        return weights.mean((0, 1))
    if choice == "rollout":
        return rollout(weights)
    if choice.startswith("layer:"):
        layer = int(choice.removeprefix("layer:"))
        if not -len(weights) <= layer < len(weights):
            raise ValueError(f"attention choice {choice!r}: the decoder has {len(weights)} layers")
        return weights[layer].mean(0)
    if choice.startswith("head:"):
        layer, _, head = choice.removeprefix("head:").partition(".")
        L, H = weights.shape[:2]
        if not (layer.isdigit() and head.isdigit() and int(layer) < L and int(head) < H):
            raise ValueError(f"attention choice {choice!r}: expected head:LAYER.HEAD with LAYER < {L}, HEAD < {H}")
        return weights[int(layer), int(head)]
    raise ValueError(f"unknown attention choice {choice!r}; expected one of {', '.join(CHOICES)}, layer:I or head:L.H")


def check_choice(choice: str, layers: int, heads: int) -> None:
    """A bad `choice` as a ValueError before any work (the same checks `reduce` makes)."""
    reduce(torch.zeros(layers, heads, 1, 1), choice)


def token_maps(
    weights: torch.Tensor, choice: str, num_visual: int, prompt_length: int, num_targets: int
) -> torch.Tensor:
    """The map of each target token: the credit its predicting query gives each visual token, [T, N].

    Target token j sits at position N + P + j and is chosen by the query one position before it.
    """
    credit = reduce(weights, choice)  # [S, S]
    queries = torch.arange(num_targets) + num_visual + prompt_length - 1  # [T]
    return credit[queries, :num_visual]
