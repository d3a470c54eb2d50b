"""One training step, and nothing else: forward, loss, backward, clip, step.

This is the whole of "training" in the textbook sense; `training/loop.py` is the bookkeeping around it (which
samples form the step, logging, skipping a bad step, checkpoints) and `training/run.py` builds what it needs.

    loss = model(input_ids, labels, features)   forward: visual tokens + text through Qwen3, cross-entropy on the
                                                 target tokens only (bridge/vlm.py; data/batches.py builds labels)
    (loss * weight).backward()                   gradients of the bridge and the top K blocks (the rest is frozen)
    clip_grad_norm_(params, grad_clip)           one bad batch cannot throw the weights far
    optimizer.step(); scheduler.step()           AdamW, learning rate from the warm-up + cosine schedule

A step may take several micro-batches (gradient accumulation, `--grad-accum`): each backward adds to the
gradients, weighted by the micro-batch's share of the step's target tokens, so the step's loss is the mean over every
target token however the tokens fall into micro-batches. Under torchrun the model is wrapped in
DistributedDataParallel, which averages gradients across processes in the backward of the last micro-batch.

A bad step (a NaN or inf loss: a too high learning rate, bf16 overflow) is skipped, and the decision is taken from
the gradients after they are averaged, the way `torch.amp.GradScaler` decides: backward always runs, a non-finite
loss makes non-finite gradients, DDP's all-reduce carries them to every process, and the gradient norm, computed from
the same averaged gradients on every process, is non-finite everywhere at once. So every process makes the same
collectives in the same order whatever its own loss, and they all skip together. (Skipping `backward()` on the one
process with a bad loss would leave the others waiting in DDP's all-reduce while it entered a different one: gloo
aborts with "collective mismatch", NCCL hangs until its timeout.)

Read next: `training/loop.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class MicroBatch:
    """One micro-batch on the device, and how much of the step it is."""

    input_ids: torch.Tensor  # [B, T] prompt + target tokens (data/batches.py)
    labels: torch.Tensor  # [B, T] target tokens; -100 where there is no loss (prompt, padding)
    features: torch.Tensor  # [B, ...] the frozen encoder's features of each sample's image
    weight: float = 1.0  # its share of the step's target tokens (x world size, since DDP averages gradients)
    sync: bool = True  # all-reduce the gradients in this backward (DDP: only the step's last micro-batch)


@dataclass
class StepResult:
    losses: list[float]  # each micro-batch's mean loss per target token
    grad_norm: float  # before clipping; nan when the step was skipped
    skipped: bool  # the averaged gradients were not finite (a loss was not, on some process): no update was made


def train_step(
    model: nn.Module,
    micro_batches: Sequence[MicroBatch],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    grad_clip: float,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> StepResult:
    """One optimizer step over `micro_batches`; skipped (on every process alike) when the averaged gradients are not
    finite, which a non-finite loss on any process makes them."""
    losses = []
    for batch in micro_batches:
        no_sync = contextlib.nullcontext() if batch.sync else model.no_sync()
        with no_sync:
            with autocast():
                loss = model(batch.input_ids, batch.labels, features=batch.features)  # mean over target tokens
            (loss * batch.weight).backward()  # adds to .grad: the step's gradient is the weighted sum
        losses.append(loss.item())
    params = [p for group in optimizer.param_groups for p in group["params"]]
    # The norm of the averaged gradients: the same number on every process (DDP made the gradients identical).
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip or float("inf"))
    if not torch.isfinite(grad_norm):
        optimizer.zero_grad(set_to_none=True)  # nothing of this step reaches the weights
        return StepResult(losses, float("nan"), skipped=True)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()  # the learning rate of the next step
    return StepResult(losses, float(grad_norm), skipped=False)
