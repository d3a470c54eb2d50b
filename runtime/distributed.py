"""Several processes, one model: the few collective operations that DistributedDataParallel training needs.

`torchrun --nproc_per_node N train.py ...` starts N copies of train.py with RANK, LOCAL_RANK and WORLD_SIZE in their
environment. Each process holds a full copy of the model and takes 1/N of every global batch; DDP averages the
gradients of the trainable parameters across processes during `backward()`, so every copy takes the same optimizer
step and the copies stay identical (https://pytorch.org/docs/stable/notes/ddp.html).

Run on one process (plain `python train.py`), every helper here is a no-op, so the single-process path is unchanged.
NCCL is the backend on GPUs, gloo on CPUs.

Read next: `training/loop.py` (the token weights and the shared stop decision across processes).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes logs, W&B, checkpoints and metrics."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def shard(self, items: Sequence) -> list:
        """This process's share of `items`: every world_size-th item, starting at its rank."""
        return list(items[self.rank :: self.world_size])

    def gather_sharded(self, local: list, total: int) -> list:
        """Undo `shard`: every process gets the full list, in the original order."""
        if not self.enabled:
            return local
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, local)
        merged = [None] * total
        for rank, part in enumerate(parts):
            merged[rank :: self.world_size] = part
        return merged

    def sum(self, value: float | int) -> float:
        """The sum of `value` over all processes."""
        if not self.enabled:
            return value
        t = torch.tensor(float(value), dtype=torch.float64, device=_collective_device())
        dist.all_reduce(t)
        return t.item()

    def max(self, value: float | int) -> float:
        """The largest `value` over all processes."""
        if not self.enabled:
            return value
        t = torch.tensor(float(value), dtype=torch.float64, device=_collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.item()

    def main_first(self, work: Callable[[], T]) -> T:
        """Run `work` on rank 0 first (it may write files: the shapes set, the feature cache), then on the others,
        which then read what rank 0 wrote."""
        if not self.is_main:
            self.barrier()
        result = work()
        if self.is_main:
            self.barrier()
        return result


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def setup_distributed() -> Distributed:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return Distributed(rank, world_size, local_rank)


def teardown_distributed(d: Distributed) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


SINGLE_PROCESS = Distributed()  # the default everywhere: plain `python train.py`
