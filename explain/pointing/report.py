"""The pointing game's results as a reader sees them: the markdown tables of a shapes run and of a Flickr30k
Entities run (EXPERIMENTS.md shows them), and the figure of a shapes run (kind words pointed right per method, the
trained model beside its controls, chance as lines).

Read next: `explain/pointing/__main__.py` (the command line that plays the games and writes these).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .flickr import TOLERANCE


def pct(x: float | None) -> str:
    return "–" if x is None or x != x else f"{x:.2f}"


def shapes_table(results: dict) -> str:
    """The markdown tables of a shapes run (EXPERIMENTS.md)."""
    lines = [
        "| view | method | kind words: points right | hits / misses / ties | untrained bridge | shuffled images | "
        "colour words: points right |",
        "|---|---|---|---|---|---|---|",
    ]
    for view, r in results["views"].items():
        for method, variants in r["methods"].items():
            k = variants["trained"]["kind"]
            lines.append(
                f"| {view} | {method} | **{pct(k['accuracy'])}** | {k['hits']} / {k['misses']} / {k['ties']} | "
                f"{pct(variants.get('untrained bridge', {}).get('kind', {}).get('accuracy'))} | "
                f"{pct(variants.get('shuffled images', {}).get('kind', {}).get('accuracy'))} | "
                f"{pct(variants['trained']['colour']['accuracy'])} |"
            )
        c = r["chance"]
        lines.append(
            f"| {view} | chance: uniform over the 9 cells | {pct(c['kind']['uniform'])} | | | | {pct(c['colour']['uniform'])} |"
        )
        lines.append(
            f"| {view} | chance: uniform over the occupied cells | {pct(c['kind']['occupied'])} | | | | {pct(c['colour']['occupied'])} |"
        )
    lines += ["", "| view | method | \"where is the X?\" questions | map peak in X's cell: answers, exact match | "
              "peak elsewhere: answers, exact match | tied peak: answers, exact match |", "|---|---|---|---|---|---|"]  # fmt: skip
    for view, r in results["views"].items():
        w = r.get("where") or {}
        for method, groups in w.get("by_peak", {}).items():
            cells = [f"{groups[g]['answers']}, {pct(groups[g]['exact_match'])}" for g in ("hit", "miss", "tie")]
            lines.append(
                f"| {view} | {method} | {w['questions']} (exact match {pct(w['exact_match'])}) | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines) + "\n"


CHANCE_LABELS = {"uniform": "uniform point / uniform cell", "centre": "centre of the view / centre cells"}


def flickr_table(results: dict) -> str:
    """The markdown table of a Flickr30k Entities run: the pixel game first (the published one), the cell game beside
    it, each over all trials and over the decidable ones, chance on the same trials; then what was not scored."""
    lines = [
        f"| view | method | pointing game: peak within {TOLERANCE} px of a box | decidable trials | "
        "peak cell's centre in a box | decidable trials |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    for view, r in results["views"].items():
        grids = []
        for method, m in r["methods"].items():
            p, c = m["pixels"], m["cells"]
            lines.append(
                f"| {view} | {method} ({m['grid']}) | **{pct(p['accuracy'])}** | {pct(p['decidable']['accuracy'])} | "
                f"{pct(c['accuracy'])} | {pct(c['decidable']['accuracy'])} |"
            )
            grids += [m["grid"]] if m["grid"] not in grids else []
        pixels = r["chance"]["pixels"]
        for grid in grids:
            cells = r["chance"][f"cells {grid}"]
            for key, label in CHANCE_LABELS.items():
                p, c = pixels[key], cells[key]
                lines.append(
                    f"| {view} | chance: {label} ({grid}) | {pct(p['all'])} | {pct(p['decidable'])} "
                    f"| {pct(c['all'])} | {pct(c['decidable'])} |"
                )
        phrases = r["phrases"]
        not_scored = "; ".join(f"{reason}: {n:,}" for reason, n in phrases["not scored"].items() if n) or "none"
        notes.append(
            f"- {view}: {phrases['scored']:,} of {phrases['marked']:,} marked phrases scored; not scored: {not_scored}"
        )
        undecided = "; ".join(
            f"{name}: {t['unwinnable']:,} cannot be won, {t['unlosable']:,} cannot be lost"
            for name, t in r["chance"].items()
        )
        notes.append(
            f'- {view}: of the {phrases["scored"]:,} trials, {undecided} (counted in "all", not in "decidable")'
        )
        training = r["training split"]
        if training["known"]:
            fate = "left out" if training["left out"] else "scored (--include-training-images)"
            notes.append(f"- {view}: {training['images in it']:,} of {r['images']:,} images are in the checkpoint's "
                         f"training split ({training['how']}): {fate}")  # fmt: skip
        else:
            notes.append(f"- {view}: the checkpoint's training split is unknown ({training['how']}); no image left out")
        if r["resized photos"]:
            notes.append(f"- {view}: {r['resized photos']:,} photos are resized copies; their boxes were rescaled")
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def figure(results: dict, path: Path) -> None:
    """Bars: kind words pointed right per method, trained beside the controls, chance as lines; one panel a view."""
    from matplotlib.figure import Figure  # not pyplot: no window

    views = list(results["views"].items())
    widths = [max(1, len(r["methods"])) for _, r in views]
    fig = Figure(figsize=(0.9 * sum(widths) + 2, 4.2))
    axes = fig.subplots(1, len(views), squeeze=False, gridspec_kw={"width_ratios": widths})
    for ax, (view, r) in zip(axes[0], views, strict=True):
        names = list(r["methods"])
        x = np.arange(len(names))
        for offset, variant, colour in ((-0.27, "trained", "C0"), (0, "untrained bridge", "C7"), (0.27, "shuffled images", "C1")):  # fmt: skip
            values = [r["methods"][m].get(variant, {}).get("kind", {}).get("accuracy", np.nan) for m in names]
            ax.bar(x + offset, values, 0.27, label=variant, color=colour)
        for key, style in (("uniform", ":"), ("occupied", "--")):
            ax.axhline(r["chance"]["kind"][key], color="k", linestyle=style, linewidth=1, label=f"chance ({key} cells)")
        ax.set_xticks(x, [m.replace("attention:", "attn ").replace("occlusion:", "occl ") for m in names], rotation=40, ha="right", fontsize=8)  # fmt: skip
        ax.set_ylim(0, 1)
        ax.set_title(f"{view}: {r['words']['kind']} kind words, {r['images']} images", fontsize=9)
        ax.set_ylabel("map peak in the named shape's cell")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
