"""The learning-rate schedule of every training loop here: the vision-language model's (`training/run.py`) and the
demo's text-pretrained language model's (`demo/pretrain.py`).

Linear warm-up to the peak learning rate, then cosine decay to 10% of it at the last step (as in nanoGPT's train.py,
https://github.com/karpathy/nanoGPT, and LLaVA's recipes). The warm-up keeps the first updates small while AdamW's
second-moment estimates are still noisy; the decay lets the last steps settle. `lr_lambda` returns the factor for
`torch.optim.lr_scheduler.LambdaLR`, which multiplies each parameter group's peak learning rate by it, so groups with
different peaks (the bridge's and the decoder's, `training/optim.py`) follow the same shape.

It imports nothing of the project, so it sits at the bottom of the layers (tests/test_layout.py), where both the
training loop and the demo's pretraining can use it.

Read next: `training/optim.py` (the optimizer whose groups it scales).
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
