"""Train the vision-language model: a frozen vision encoder, a trainable bridge, Qwen3 with its top K blocks trainable.

    python train.py --encoder vit --top-k 3          # Flickr30k + Qwen3-0.6B-Base (GPU and network, or local copies)
    python train.py --demo                           # the offline demo: shapes set, tiny decoder, a few CPU minutes
    python train.py --test --encoder vit --top-k 3   # evaluate the newest matching checkpoint on the test split
    python train.py --push-to-hub OWNER/NAME         # share the newest matching checkpoint on the Hugging Face Hub
    torchrun --nproc_per_node 8 train.py ...         # the same run on 8 GPUs (DistributedDataParallel)

This file is the command line only: parse, check, run, report. Settings come from flags, the environment or `.env`
(`training/config.py`, `.env.example`); the run itself is `training.run` (read `training/__init__.py` for the
order), and everything a run writes goes to its own folder, `OUTPUT_DIR_MODELS/runs/RUN_NAME/`.

Exit status: 0 done; 2 a mistake in the input, or a file that could not be written (one line on stderr says what);
and 128 + the signal's number for a run stopped by a signal after the step it was in, with a checkpoint at that step
to `--resume` from: 143 SIGTERM (a scheduler preempting the job), 138 SIGUSR1 (`sbatch --signal=USR1@90`: the time
limit is near), 130 Ctrl-C. These are the statuses the shell reports for a process killed by the signal, so wrappers
read them as before; a batch script requeues on them (docs/reliability.md). A second Ctrl-C stops at once, without a
checkpoint.

Read next: `training/__init__.py` (the reading order of the training code), then `training/step.py`.
"""

from __future__ import annotations

import os

# Before torch is imported: its OpenMP runtime reads this once, when it loads. PASSIVE lets idle threads sleep instead
# of spinning, which otherwise makes small CPU models 10-20x slower as soon as anything else runs on the machine (see
# the Makefile). A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sys
import time

from rich.console import Console

from checkpoints.share import push_checkpoint
from demo.report import report_demo
from errors import UserError
from runtime.signals import Stopped
from training.config import load_config
from training.preflight import checkpoint_to_share
from training.run import run


def main(argv: list[str] | None = None) -> int:
    console = Console(stderr=True, highlight=False)
    try:
        cfg = load_config(argv)  # parse and validate: a bad value is one line naming it
        if cfg.share.push_to_hub:  # share a checkpoint on the Hugging Face Hub (checkpoints/share.py); trains nothing
            checkpoint = checkpoint_to_share(cfg)
            lines = push_checkpoint(
                checkpoint,
                cfg.share.push_to_hub,
                private=not cfg.share.public,
                dry_run=cfg.share.dry_run,
                hub_decoder=cfg.share.hub_decoder,
            )
            console.print(lines, soft_wrap=True, markup=False)
            return 0
        started = time.perf_counter()
        result = run(cfg)  # check, then train (or --test: evaluate) in training/run.py
        if cfg.mode == "demo" and int(os.environ.get("RANK", "0")) == 0:  # the table, and the run folder's demo.json
            report_demo(console, result, time.perf_counter() - started, cfg, argv)
    except UserError as e:
        console.print(f"[red]error:[/] {e}", soft_wrap=True)
        return 2
    except Stopped as stopped:  # a signal, after the checkpoint to resume from (runtime/signals.py)
        return stopped.status
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
