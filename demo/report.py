"""The demo's verdict: did it learn, and does it use the image? One table, printed when `--demo` finishes, and the
same numbers written to the run folder as `demo.json`, the results file that the README's and docs/demo.md's demo
tables are made from (`demo/tables.py`).

`demo.json` holds what a reader needs to trust a number: the command, the seed, the machine (processor, cores,
threads, torch), the date, the seconds, the evaluation's protocol (images, captions, galleries, decoding), the last
evaluation's metrics with the shuffled-image control, and every evaluation of the run (`history`). A run worth
quoting is copied into `demo/results/` and the tables are made again (docs/demo.md, "Where the numbers live").

Read next: `demo/tables.py` (the tables made from the results), `docs/demo.md` (the recipe and what made the demo
learn), `train.py` (which calls `report_demo`).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console

from runtime.devices import resolve_device
from runtime.env import cpu_name
from runtime.files import write_text_atomically

if TYPE_CHECKING:  # never imported at run time: training is a layer above demo/ (tests/test_layout.py)
    from training.config import TrainConfig
    from training.run import RunResult

RESULTS_FILE = "demo.json"  # in the run folder, beside metrics.json
# The settings recorded with the results: what the data and the recipe were (the checkpoint's sidecar has them all).
SETTINGS = ("data", "split", "decoder", "encoder", "view", "top_k", "epochs", "batch_size", "eval_images",
            "gallery_size")  # fmt: skip

ROWS = (  # (shown as, metric key, its shuffled-image control's key or None)
    ("CIDEr-D", "cider_d", "shuffled/cider_d"),
    ("BLEU-4", "bleu4", "shuffled/bleu4"),
    ("QA exact match", "qa_exact_match", "shuffled/qa_exact_match"),
    ("image->text R@1", "i2t_recall@1", None),
    ("text->image R@1", "t2i_recall@1", None),
)


def machine(device: str) -> dict[str, Any]:
    """What produced the numbers: processor, cores this process may use, torch's threads, the device, versions."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"cpu": cpu_name(), "cores": cores, "threads": torch.get_num_threads(), "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    info |= {"torch": torch.__version__, "python": platform.python_version()}
    if hasattr(os, "getloadavg"):
        info["load_average"] = round(os.getloadavg()[0], 1)  # at the end of the run: >= the cores means shared
    return info


def demo_results(
    result: RunResult, seconds: float, cfg: TrainConfig, argv: Sequence[str] | None, protocol: Mapping | None
) -> dict[str, Any]:
    """The contents of `demo.json` (see the module docstring)."""
    device = str(resolve_device(cfg.device)[0])
    return {
        "command": shlex.join(["python", "train.py", *(sys.argv[1:] if argv is None else argv)]),
        "seed": cfg.seed,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(device),
        "seconds": round(seconds, 1),  # from the parsed command line to the last evaluation (imports not counted)
        "train_seconds": round(result.train_seconds, 1),
        "settings": {k: cfg.to_dict()[k] for k in SETTINGS},
        "protocol": dict(protocol or {}),
        "metrics": dict(result.metrics),
        "history": list(result.history),
    }


def write_results(run_dir: Path, results: Mapping[str, Any]) -> Path:
    """`run_dir/demo.json`, written atomically."""
    path = Path(run_dir) / RESULTS_FILE
    write_text_atomically(path, json.dumps(results, indent=1) + "\n")
    return path


def report_demo(
    console: Console, result: RunResult, seconds: float, cfg: TrainConfig, argv: Sequence[str] | None = None
) -> None:
    """Print the held-out metrics with each image, beside the same model's with the images shuffled between samples,
    and write them with their machine and command to the run folder's `demo.json`."""
    metrics = result.metrics
    console.rule("demo result")
    console.print(f"{'held-out metric':<20}{'with its image':>16}{'images shuffled':>18}")
    for name, key, control in ROWS:
        real, shuffled = metrics.get(key), metrics.get(control) if control else None
        if real is not None:
            console.print(f"{name:<20}{real:>16.3f}{'' if shuffled is None else f'{shuffled:>18.3f}'}")
    if result.run_dir is None:  # a run without a folder: nothing to write the results into
        console.print(f"finished in {seconds:.0f} s")
        return
    evaluations = Path(result.run_dir) / "metrics.json"  # every evaluation of the run, each with its protocol
    written = json.loads(evaluations.read_text()) if evaluations.exists() else {}
    protocols = [v.get("protocol") for k, v in written.items() if k.endswith("/val")]
    results = demo_results(result, seconds, cfg, argv, protocols[-1] if protocols else None)
    path = write_results(result.run_dir, results)
    console.print(f"finished in {seconds:.0f} s; checkpoints and the results ({path.name}) in {result.run_dir}")
