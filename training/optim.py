"""The optimizer and the learning-rate schedule of every training loop here: the VLM's and the demo LM's.

- **AdamW in groups**: the bridge and the decoder's top blocks at their own peak learning rates (a fresh bridge
  wants ~1e-3; pretrained blocks ~2e-5, or they forget what they know), and no weight decay on norms and biases.
- **Schedule**: linear warm-up to the peak, then cosine decay to 10% of it at the last step (as in nanoGPT's
  train.py, https://github.com/karpathy/nanoGPT, and LLaVA's recipes). `lr_lambda` returns the factor for
  `torch.optim.lr_scheduler.LambdaLR`, which multiplies each parameter group's peak learning rate by it.

Read next: `training/step.py`, where both are used.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from bridge import VisionLanguageModel


def build_optimizer(
    model: VisionLanguageModel, lr_bridge: float, lr_decoder: float, weight_decay: float, device: torch.device
) -> torch.optim.AdamW:
    """AdamW with the bridge and the decoder's top blocks at their own learning rates; no decay on norms/biases."""
    groups = []
    for name, lr in (("bridge", lr_bridge), ("decoder", lr_decoder)):
        params = model.parameter_groups()[name]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        groups += [
            {"params": decay, "lr": lr, "weight_decay": weight_decay, "name": name},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": name},
        ]
    groups = [g for g in groups if g["params"]]
    # The fused kernel updates all parameters in one pass: on CUDA, and on the CPU too (9.5x faster per step there
    # in BENCHMARKS.md); other devices keep the for-loop implementation.
    return torch.optim.AdamW(groups, betas=(0.9, 0.95), fused=device.type in ("cuda", "cpu"))


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up to the peak over `warmup` steps, then cosine decay to 10% of it at step `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
