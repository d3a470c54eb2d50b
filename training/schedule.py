"""The learning-rate schedule of every training loop here: train.py's and the demo LM's pretraining.

Linear warm-up to the peak, then cosine decay to 10% of it at the last step (as in nanoGPT's train.py,
https://github.com/karpathy/nanoGPT, and LLaVA's recipes). `lr_lambda` returns the factor for
`torch.optim.lr_scheduler.LambdaLR`, which multiplies each parameter group's peak learning rate by it.
"""

from __future__ import annotations

import math
from collections.abc import Callable


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up to the peak over `warmup` steps, then cosine decay to 10% of it at step `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
