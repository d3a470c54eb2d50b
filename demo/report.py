"""The demo's verdict: did it learn, and does it use the image? One table, printed when `--demo` finishes.

Read next: `docs/demo.md` (the recipe and what made the demo learn), `train.py` (which prints this table).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rich.console import Console

ROWS = (  # (shown as, metric key, its shuffled-image control's key or None)
    ("CIDEr-D", "cider_d", "shuffled/cider_d"),
    ("BLEU-4", "bleu4", "shuffled/bleu4"),
    ("QA exact match", "qa_exact_match", "shuffled/qa_exact_match"),
    ("image->text R@1", "i2t_recall@1", None),
    ("text->image R@1", "t2i_recall@1", None),
)


def report_demo(console: Console, metrics: Mapping[str, float], seconds: float, output_dir: str) -> None:
    """The held-out metrics with each image, beside the same model's with the images shuffled between samples."""
    console.rule("demo result")
    console.print(f"{'held-out metric':<20}{'with its image':>16}{'images shuffled':>18}")
    for name, key, control in ROWS:
        real, shuffled = metrics.get(key), metrics.get(control) if control else None
        if real is not None:
            console.print(f"{name:<20}{real:>16.3f}{'' if shuffled is None else f'{shuffled:>18.3f}'}")
    console.print(f"finished in {seconds:.0f} s; checkpoints in {Path(output_dir).expanduser() / 'runs'}")
