"""The training loop: the bookkeeping around `train_step` (training/step.py), one epoch at a time.

For each step it takes the next `grad_accum` micro-batches of the epoch's order (length-bucketed, shuffled from the
seed and the epoch: `data.batch_order`), weights each by its share of the step's target tokens, and calls
`train_step`. Around that: a step whose loss is not finite is skipped (and the run stops after `MAX_BAD_STEPS` in a
row); the loss, gradient norm, learning rates and throughput go to the tracker; the progress bar moves; a
checkpoint is written every `--save-every` steps; a validation point is taken every `--eval-every` steps;
`--max-steps` ends the run; and between steps, a signal (SIGTERM, SIGUSR1, Ctrl-C: `runtime/signals.py`) ends it
after the step it arrived in. `Position` is where the loop is: a checkpoint stores it and `--resume` starts there.

Read next: `training/run.py`, which builds what the loop needs (`Job`) and calls `train_epoch` for each epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from data import batch_order
from errors import UserError
from runtime.distributed import Distributed
from training.config import TrainConfig
from training.step import MicroBatch, train_step
from training.tracking import Log

MAX_BAD_STEPS = 5  # non-finite losses in a row before the run stops


@dataclass
class Position:
    """Where the loop is: a checkpoint stores it, and `--resume` starts from it."""

    epoch: int = 1
    batch: int = 0  # micro-batches of this epoch already consumed
    step: int = 0  # optimizer steps taken
    bad_steps: int = 0  # non-finite losses in a row


@dataclass
class Job:
    """Everything the loop needs, built once by `training.run.run`."""

    cfg: TrainConfig
    model: nn.Module  # the VisionLanguageModel, or its DistributedDataParallel wrapper under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    samples: Sequence  # data.Sample: (image row, prompt, target) of every training sample
    lengths: Sequence[int]  # each sample's length in characters: a cheap proxy for bucketing by length
    collate: Callable[[list], dict[str, torch.Tensor]]  # data.VLMCollator: samples -> input_ids, labels, ...
    features: Any  # the frozen encoder's features of the training images, indexed by image row
    device: torch.device
    autocast: Callable
    tracker: Any  # training.tracking.Tracker (rank 0) or SilentTracker
    dist: Distributed
    log: Log
    # Whether a signal asks the run to stop (runtime/signals.py: every process together); checked after each step.
    stop: Callable[[], bool] = lambda: False


def micro_batches(job: Job, batches: list[dict[str, torch.Tensor]]) -> list[MicroBatch]:
    """The step's micro-batches on the device, each weighted by its share of the step's target tokens on all
    processes together (x world_size, since DDP averages the gradients), so the step's loss is the mean over every
    target token; gradients are all-reduced once, in the last micro-batch's backward."""
    tokens = [int((b["labels"] != -100).sum()) for b in batches]
    step_tokens = job.dist.sum(sum(tokens))
    return [
        MicroBatch(
            input_ids=batch["input_ids"].to(job.device),
            labels=batch["labels"].to(job.device),
            features=job.features[batch["image_index"]].to(job.device),
            weight=n * job.dist.world_size / step_tokens,
            sync=k == len(batches) - 1 or not job.dist.enabled,
        )
        for k, (batch, n) in enumerate(zip(batches, tokens, strict=True))
    ]


class Throughput:
    """Samples and tokens (visual + text) per second since the last reset, on all processes together."""

    def __init__(self, num_visual_tokens: int, world_size: int) -> None:
        self.num_visual_tokens, self.world_size = num_visual_tokens, world_size
        self.reset()

    def reset(self) -> None:
        self.t0, self.samples, self.tokens = time.perf_counter(), 0, 0

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        rows = len(batch["input_ids"])
        self.samples += rows * self.world_size
        self.tokens += (int(batch["attention_mask"].sum()) + rows * self.num_visual_tokens) * self.world_size

    def rates(self) -> tuple[float, float]:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        return self.samples / elapsed, self.tokens / elapsed


def train_epoch(
    job: Job,
    at: Position,
    checkpoint: Callable[[bool, dict], None],
    validate: Callable[..., dict] | None = None,
) -> bool:
    """Train from `at` to the end of its epoch, moving `at` with every step. Returns True when the run stops early:
    at --max-steps, or after a step when `job.stop()` says a signal asks it to."""
    cfg, dist = job.cfg, job.dist
    order = batch_order(job.lengths, cfg.batch_size, cfg.seed, at.epoch)
    progress = Progress(
        TextColumn(f"epoch {at.epoch}/{cfg.epochs}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=job.log.console,
        transient=True,
        disable=not (job.log.console.is_terminal and dist.is_main),
    )
    throughput = Throughput(cfg.model.num_visual_tokens, dist.world_size)
    with progress:
        task = progress.add_task("train", total=len(order), completed=at.batch, info="")
        while at.batch < len(order):
            if job.stop():  # a signal arrived: the last step is finished, the run checkpoints it and exits
                return True
            # One optimizer step = grad_accum micro-batches of one global batch each; with torchrun every process
            # takes its share (every world_size-th sample) of each global batch.
            step_order = order[at.batch : at.batch + cfg.grad_accum]
            at.batch += len(step_order)  # the data position moves with the weights: a checkpoint resumes here
            # The epoch's one short batch (the tail of the length bucketing) may hold fewer samples than there are
            # processes; it would leave a process with nothing to train on (a loss of 0/0), so it is dropped: at most
            # world_size - 1 samples an epoch, a different few each epoch. One process never drops anything.
            step_order = [indices for indices in step_order if len(indices) >= dist.world_size]
            if not step_order:
                continue
            batches = [job.collate(dist.shard([job.samples[i] for i in indices])) for indices in step_order]
            micro = micro_batches(job, batches)
            result = train_step(job.model, micro, job.optimizer, job.scheduler, cfg.grad_clip, job.autocast)
            for batch in batches:
                throughput.add(batch)
            if result.skipped:  # counted; the run stops if it keeps happening
                at.bad_steps += 1
                job.log(f"non-finite loss at step {at.step + 1}: step skipped ({at.bad_steps} in a row)", "yellow")
                if at.bad_steps >= MAX_BAD_STEPS:
                    raise UserError(
                        f"training diverged: {at.bad_steps} non-finite losses in a row; "
                        "lower --lr-adapter/--lr-qwen or use --precision fp32"
                    )
                continue
            at.bad_steps = 0
            at.step += 1
            loss = dist.sum(sum(x * m.weight / dist.world_size for x, m in zip(result.losses, micro, strict=True)))
            samples_per_s, tokens_per_s = throughput.rates()
            job.tracker.log(
                {
                    "train/loss": loss,
                    "train/grad_norm": result.grad_norm,
                    "train/samples_per_s": samples_per_s,
                    "train/tokens_per_s": tokens_per_s,
                    "epoch": at.epoch - 1 + at.batch / len(order),
                    **{f"lr/{g['name']}": g["lr"] for g in job.optimizer.param_groups},
                },
                step=at.step,
                to_wandb=at.step % cfg.log_every == 0,
            )
            speed = f"{samples_per_s:,.0f} samples/s, {tokens_per_s:,.0f} tokens/s"
            progress.update(task, completed=at.batch, info=f"loss {loss:.3f}  {speed}")
            if at.step % 50 == 0:
                job.log(f"epoch {at.epoch} step {at.step}: loss {loss:.4f}, {speed}", "dim")
            if cfg.save_every and at.step % cfg.save_every == 0:
                checkpoint(False, {})
            if cfg.max_steps and at.step >= cfg.max_steps:
                return True
            if validate is not None and at.step % cfg.eval_every == 0 and at.batch < len(order):
                validate(shuffled_control=False)  # a point of the learning curve (the epoch's end evaluates anyway)
                job.model.train()
                throughput.reset()  # throughput without the evaluation's time
    return False
