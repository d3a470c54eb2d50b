"""The vision-language model's optimizer: AdamW in groups.

The bridge, the decoder's top blocks and the LoRA adapters train at their own peak learning rates (a fresh bridge
wants ~1e-3; pretrained blocks ~2e-5, or they forget what they know; LoRA's low-rank updates, which start at zero,
~1e-4 and up), and norms and biases get no weight decay. The schedule that
scales every group's peak, step by step (linear warm-up, then cosine decay), is `lr_schedule.py`: it lies below the
training layer, since the demo's text-pretrained LM (`demo/pretrain.py`) follows it too.

Read next: `training/step.py`, where the optimizer steps.
"""

from __future__ import annotations

import torch

from bridge import VisionLanguageModel


def build_optimizer(
    model: VisionLanguageModel,
    lr_bridge: float,
    lr_decoder: float,
    weight_decay: float,
    device: torch.device,
    lr_lora: float = 2e-4,
) -> torch.optim.AdamW:
    """AdamW with the bridge, the decoder's top blocks and the LoRA adapters at their own learning rates; no decay on
    norms/biases. Groups with nothing to train (no top blocks at K = 0, no adapters at rank 0) are left out."""
    groups = []
    for name, lr in (("bridge", lr_bridge), ("decoder", lr_decoder), ("lora", lr_lora)):
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
