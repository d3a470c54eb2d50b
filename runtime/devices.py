"""The device and the arithmetic precision of a run: one answer for training, evaluation and caption.py.

`auto` picks CUDA when a GPU is visible, else the CPU. On CUDA the forward pass runs under bf16 autocast (the
matrix multiplications run in bf16); on the CPU it stays fp32, where bf16 is slower on most machines. Under torchrun,
each process takes the GPU of its LOCAL_RANK.

Under bf16 autocast the frozen weights are stored in bf16 too (`frozen_dtype`), as the released Qwen3 weights are:
autocast would cast each fp32 matrix to bf16 on every use anyway. What trains stays fp32 (AdamW's updates are far
below bf16's resolution). `bridge/vlm.py` (`VisionLanguageModel.store_frozen_in`) does the casting.

Read next: `runtime/distributed.py` (several processes), `training/run.py` (where the device is chosen).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from errors import UserError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(
    name: str = "auto", precision: str = "auto", local_rank: int = 0
) -> tuple[torch.device, Callable[[], contextlib.AbstractContextManager]]:
    """The device, and an autocast context factory: bf16 autocast on CUDA (or when asked), fp32 otherwise."""
    if name not in DEVICES:
        raise UserError(f"device={name!r} is invalid; accepted: {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA GPU is visible; use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)  # torchrun: a GPU a process
    bf16 = computes_in_bf16(device, precision)

    def autocast() -> contextlib.AbstractContextManager:
        if bf16:
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    return device, autocast


def computes_in_bf16(device: torch.device, precision: str) -> bool:
    """Whether a run at `precision` on `device` computes under bf16 autocast: `bf16`, or `auto` on CUDA."""
    if precision not in PRECISIONS:
        raise UserError(f"precision={precision!r} is invalid; accepted: {', '.join(PRECISIONS)}")
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def frozen_dtype(device: torch.device, precision: str) -> torch.dtype:
    """How the frozen weights are stored: bf16 when the run computes under bf16 autocast (half the memory, and no
    cast on every use), fp32 otherwise (the CPU's default: nothing changes there)."""
    return torch.bfloat16 if computes_in_bf16(device, precision) else torch.float32
