"""The what-trains grid's plan, table and figure: which parameters should learn, and what each choice costs.

Every method (the bridge alone, top-K, LoRA at several ranks, LoRA beside top-1: `experiments/grids.py`) is tried at
three learning rates of its own parameters, so that the grid compares methods and not one learning rate. To fit the
demo's 30-minute budget on two cores, the learning rates are swept on the first seed only; each method's best one (by
held-out CIDEr-D on the validation images) is then trained on the other seeds. The table reports, per method at its
best learning rate, mean and spread over the seeds:

- what it costs: trainable parameters, AdamW's state in bytes (measured from the optimizer), the mean time of an
  optimizer step (the training loop's time over its steps);
- what it buys: held-out CIDEr-D and QA exact match, each beside its shuffled-image control;
- what it costs the language model: its perplexity on held-out text no run shows, before and after the run
  (`experiments/forgetting.py`).

Choosing the learning rate and reporting on the same validation images flatters every method a little, and all of them
alike; the seeds other than the first were not used to choose.

Read next: `experiments/runner.py` (which trains the cells), EXPERIMENTS.md (the results and what they say).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from experiments.grids import Cell
from experiments.runner import Setup, mean_sd, run_grid
from runtime.files import write_atomically

SELECT_BY = "cider_d"  # the validation metric that picks each method's learning rate


def methods(cells: Sequence[Cell]) -> dict[str, list[Cell]]:
    """The cells of each method, in the grid's order (one per learning rate)."""
    found: dict[str, list[Cell]] = {}
    for cell in cells:
        found.setdefault(cell.labels["method"], []).append(cell)
    return found


def best_cells(records: Sequence[dict], cells: Sequence[Cell], seed: int) -> list[Cell]:
    """Each method's cell whose `seed` run scored the highest validation `SELECT_BY`."""
    score = {r["cell"]: r["metrics"].get(SELECT_BY, float("-inf")) for r in records if r["seed"] == seed}
    return [max(group, key=lambda c: score.get(c.name, float("-inf"))) for group in methods(cells).values()]


def run_what_trains(
    setup: Setup,
    cells: Sequence[Cell],
    seeds: Sequence[int],
    jobs: int,
    say: Callable[[str], None] = lambda line: print(line, flush=True),
) -> tuple[list[dict], list[Cell]]:
    """The sweep on the first seed, then each method's best learning rate on the other seeds. Returns every record
    and the chosen cells."""
    sweep = run_grid(setup, cells, seeds[:1], jobs=jobs, say=say)
    chosen = best_cells(sweep, cells, seeds[0])
    say("what-trains: best learning rates: " + ", ".join(f"{c.labels['method']} {c.labels['lr']:g}" for c in chosen))
    rest = run_grid(setup, chosen, seeds[1:], jobs=jobs, say=say) if len(seeds) > 1 else []
    return sweep + rest, chosen


def _stat(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return "–"
    mean, sd = mean_sd(values)
    return fmt.format(mean) + (" ± " + fmt.format(sd) if len(values) > 1 else "")


def table_rows(records: Sequence[dict], chosen: Sequence[Cell]) -> list[dict[str, Any]]:
    """One row per method at its chosen learning rate, with every seed's record of that cell."""
    rows = []
    for cell in chosen:
        runs = [r for r in records if r["cell"] == cell.name]
        ppl = [r["text_perplexity"] for r in runs if r.get("text_perplexity")]
        rows.append({
            "method": cell.labels["method"],
            "rank_share": cell.labels["rank_share"],
            "lr": cell.labels["lr"],
            "lr_key": cell.labels["lr_key"],
            "seeds": len(runs),
            "trainable": runs[0]["trainable_parameters"],
            "optimizer_bytes": runs[0]["optimizer_state_bytes"],
            "step_ms": [1000 * r["step_seconds"] for r in runs],
            "cider_d": [r["metrics"]["cider_d"] for r in runs],
            "shuffled_cider_d": [r["shuffled"]["cider_d"] for r in runs],
            "qa": [r["metrics"]["qa_exact_match"] for r in runs],
            "shuffled_qa": [r["shuffled"]["qa_exact_match"] for r in runs],
            "ppl_before": [p["before"] for p in ppl],
            "ppl_after": [p["after"] for p in ppl],
            "text": ppl[0]["text"] if ppl else None,
        })  # fmt: skip
    return rows


def write_table(setup: Setup, records: Sequence[dict], chosen: Sequence[Cell], cells: Sequence[Cell]) -> Path:
    """results/what-trains/table.md: the methods at their best learning rates, then the whole sweep."""
    rows = table_rows(records, chosen)
    lines = [
        "| method | r / width | best lr | trainable | AdamW state | step (ms) | CIDEr-D (shuffled) | QA exact match "
        "(shuffled) | text perplexity before → after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['rank_share'] or '–'} | {row['lr']:g} ({row['lr_key']}) | {row['trainable']:,} "
            f"| {row['optimizer_bytes'] / 1e6:.2f} MB | {_stat(row['step_ms'], '{:.1f}')} | "
            f"{_stat(row['cider_d'])} ({_stat(row['shuffled_cider_d'])}) | {_stat(row['qa'])} "
            f"({_stat(row['shuffled_qa'])}) | {_stat(row['ppl_before'])} → {_stat(row['ppl_after'])} |"
        )
    first_seed = min(r["seed"] for r in records)
    sweep = ["", f"The sweep (seed {first_seed}): held-out CIDEr-D / QA exact match at each learning rate.", ""]
    sweep += ["| method | learning rates | CIDEr-D / QA exact match |", "|---|---|---|"]
    by_name = {r["cell"]: r for r in records if r["seed"] == first_seed}
    for method, group in methods(cells).items():
        scores = [by_name.get(c.name) for c in group]
        results = "; ".join(
            f"{c.labels['lr']:g}: {r['metrics']['cider_d']:.2f} / {r['metrics']['qa_exact_match']:.2f}"
            for c, r in zip(group, scores, strict=True)
            if r is not None
        )
        sweep.append(f"| {method} | {group[0].labels['lr_key']} | {results} |")
    text = rows[0]["text"] if rows and rows[0]["text"] else "held-out text"
    header = [f"# {setup.grid}", ""]
    timing_path = setup.results_dir / setup.grid / "timing.json"
    if timing_path.exists():
        timing = json.loads(timing_path.read_text())
        header += [f"`{timing['command']}` ({timing['machine']}; {timing['finished']}).", ""]
    header += [
        "Each method at the best of its three learning rates (chosen on the first seed's validation CIDEr-D), mean ± sd "
        f"over {max(r['seeds'] for r in rows)} seeds; held-out metrics of the last epoch (validation images); text "
        f"perplexity: the decoder alone on {text}, before and after the run.",
        "",
    ]
    path = setup.results_dir / setup.grid / "table.md"
    write_atomically(path, lambda p: p.write_text("\n".join(header + lines + sweep) + "\n"))
    (setup.results_dir / setup.grid / "rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    return path


def write_figure(setup: Setup, records: Sequence[dict], chosen: Sequence[Cell]) -> Path:
    """results/what-trains/what_trains.png: CIDEr-D, and the text perplexity after / before, against the trainable
    parameters (log scale), one point per method at its best learning rate, with the seeds' spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table_rows(records, chosen)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k, row in enumerate(rows):
        colour, x = f"C{k % 10}", row["trainable"]
        for ax, values in ((axes[0], row["cider_d"]), (axes[1], [a / b for a, b in zip(row["ppl_after"],
                                                                                            row["ppl_before"],
                                                                                            strict=True)])):  # fmt: skip
            if values:
                mean, sd = mean_sd(values)
                ax.errorbar([x], [mean], yerr=[sd], fmt="o", color=colour, capsize=3, label=row["method"])
    axes[0].set_ylabel("held-out CIDEr-D")
    axes[1].set_ylabel("text perplexity after / before (1 = nothing forgotten)")
    axes[1].set_yscale("log")  # from 1 (nothing forgotten) to hundreds
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = setup.results_dir / setup.grid / "what_trains.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
