"""The device and the arithmetic precision of a run: one answer for training, evaluation and caption.py.

`auto` picks CUDA when a GPU is visible, else the CPU. On CUDA the forward pass runs under bf16 autocast (the
weights stay fp32, the matrix multiplications run in bf16); on the CPU it stays fp32, where bf16 is slower on most
machines. Under torchrun, each process takes the GPU of its LOCAL_RANK.

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
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")

    def autocast() -> contextlib.AbstractContextManager:
        if bf16:
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    return device, autocast
