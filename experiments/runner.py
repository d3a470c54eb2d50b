"""Run a grid of training configurations through `training.run`, several seeds each, and write what they measured.

For every (cell, seed) the runner builds a `TrainConfig`, calls `training.run(config)` in this process or a worker
process (the training code as a library: a function that takes a config and returns its metrics), and writes one JSON
record. From the records it writes a markdown table (mean ± standard deviation over seeds) and figures. Every run
also goes to Weights & Biases, grouped by grid, so the dashboard compares them.

    results/<grid>/cells/<cell>-seed<s>.json   config, seed, metrics, shuffled-image control, curve, time, parameters
    results/<grid>/table.md                    mean ± sd over seeds, one row per cell
    results/<grid>/<metric>_vs_<x>.png         held-out CIDEr-D and QA exact match against K / tokens / recipe
    results/<grid>/curves.png                  validation metric against training step, mean over seeds

A rerun skips every cell whose record exists with the same configuration (so an interrupted grid resumes, and a grid
run with other settings reruns only what changed), and says how many records it reused and how many runs it trained.
A record's key is the configuration of its runs, not where they ran (the work and cache folders, W&B), so records
stay valid when those folders move. Checkpoints, W&B files and logs of the runs go to the work directory
(`.data/experiments/` beside the repository by default), never into the results.

Read next: `training/run.py` (the run each cell is), `EXPERIMENTS.md` (the results).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from checkpoints.resolve import named_checkpoint
from errors import UserError
from experiments.grids import PRETRAINED, Cell
from runtime.files import write_atomically
from training.config import DEMO_SETTINGS, TrainConfig

# The metrics a table shows, in order: (key in the run's metrics, column title).
TABLE_METRICS = [
    ("cider_d", "CIDEr-D"),
    ("shuffled/cider_d", "CIDEr-D, shuffled"),
    ("bleu4", "BLEU-4"),
    ("qa_exact_match", "QA exact match"),
    ("shuffled/qa_exact_match", "QA EM, shuffled"),
    ("i2t_recall@1", "i→t R@1"),
    ("t2i_recall@1", "t→i R@1"),
    ("loss", "val loss"),
]
FIGURE_METRICS = [("cider_d", "CIDEr-D"), ("qa_exact_match", "QA exact match")]


@dataclass(frozen=True)
class Setup:
    """What every cell of a grid shares: the base configuration, the two language models, where things go."""

    grid: str
    base: dict[str, Any]  # TrainConfig fields every cell starts from
    pretrained_decoder: str  # "demo-pretrained", or the real checkpoint
    random_decoder: str  # "demo", or "random-init:" + the real checkpoint
    results_dir: Path  # records, tables and figures (committed for the shapes set)
    work_dir: Path  # checkpoints, run directories, logs (never committed)
    command: str  # the command line, written into the table


def demo_base() -> dict[str, Any]:
    """The offline demo's configuration (shapes set, tiny encoder, 3-block decoder, one CPU thread)."""
    return {key: value for key, value in DEMO_SETTINGS.items() if key != "decoder"}


def cell_configs(setup: Setup, cell: Cell, seed: int) -> list[TrainConfig]:
    """The TrainConfig of each stage of `cell` for `seed` (a second stage starts from the first's checkpoint)."""
    configs = []
    for i, stage in enumerate(cell.stages, start=1):
        values = {**setup.base, **{k: v for k, v in stage.items() if k not in ("lm", "init_from")}}
        values["decoder"] = setup.pretrained_decoder if stage["lm"] == PRETRAINED else setup.random_decoder
        values["seed"] = seed
        values["output_dir"] = str(setup.work_dir / setup.grid / cell.name / f"seed{seed}" / f"stage{i}")
        values["run_name"] = f"{setup.grid}-{cell.name}-seed{seed}" + (f"-stage{i}" if len(cell.stages) > 1 else "")
        values["wandb_group"] = setup.grid
        values["keep_checkpoints"] = 1
        if stage.get("init_from") == "stage1":
            values["init_from"] = f"<stage1 of {cell.name}, seed {seed}>"  # resolved when stage 1 has run
        configs.append(TrainConfig.from_dict(values))
    return configs


# Where and how a run ran, not what it trained: left out of a record's key, so moving a folder keeps the records.
LOCATION_FIELDS = ("output_dir", "cache_dir", "wandb", "wandb_entity", "wandb_project", "wandb_group")


def config_key(configs: Sequence[TrainConfig]) -> str:
    """A hash of a cell's configurations: a record is reused only while it still describes the same runs (and, for
    the demo's text-pretrained LM, the same way of pretraining it: `demo/pretrain.py`'s PRETRAIN_FORMAT)."""
    from demo.pretrain import DEMO_PRETRAINED, PRETRAIN_FORMAT

    fields = [{k: v for k, v in c.to_dict().items() if k not in LOCATION_FIELDS} for c in configs]
    for f in fields:
        if f["decoder"] == DEMO_PRETRAINED:
            f["pretrain_format"] = PRETRAIN_FORMAT
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def record_path(setup: Setup, cell_name: str, seed: int) -> Path:
    return setup.results_dir / setup.grid / "cells" / f"{cell_name}-seed{seed}.json"


def finished(setup: Setup, cell: Cell, seed: int) -> dict | None:
    """The record of a finished (cell, seed) with today's configuration, or None."""
    path = record_path(setup, cell.name, seed)
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if record.get("key") == config_key(cell_configs(setup, cell, seed)) else None


def reuse_line(setup: Setup, reused: int, to_train: int) -> str:
    """What a grid run is about to do: how many (cell, seed) records it reuses, and how many runs it trains."""
    where = setup.results_dir / setup.grid / "cells"
    return (
        f"{setup.grid}: {reused + to_train} (cell, seed) runs: {reused} reused from their records in {where} (same "
        f"configuration), {to_train} to train"
    )


def run_cell(setup: Setup, cell: Cell, seed: int) -> dict:
    """Train every stage of one (cell, seed) with training.run, and return its record. Runs in a worker process too."""
    from experiments.forgetting import text_perplexity_before_after
    from training.run import run  # here, not at the top: a worker process imports torch and the model code once, itself

    configs = cell_configs(setup, cell, seed)
    log_path = setup.work_dir / setup.grid / cell.name / f"seed{seed}" / "console.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = []
    with open(log_path, "w") as log, contextlib.redirect_stderr(log), contextlib.redirect_stdout(log):
        for i, config in enumerate(configs):
            if i > 0 and config.init_from:  # stage 2 starts from stage 1's final checkpoint
                stage1 = named_checkpoint(configs[0].output_dir, flag="--init-from")  # its output folder's run
                config = TrainConfig.from_dict({**config.to_dict(), "init_from": str(stage1)})
            results.append(run(config))
        forgetting = text_perplexity_before_after(configs[-1], results[-1].run_dir)
    final = results[-1]
    offset = 0  # steps of the earlier stages, so that a two-stage curve continues where stage 1 ended
    history = []
    for result in results:
        history += [{**point, "step": point["step"] + offset} for point in result.history]
        offset += max((point["step"] for point in result.history), default=0)
    return {
        "grid": setup.grid,
        "cell": cell.name,
        "seed": seed,
        "labels": cell.labels,
        "key": config_key(configs),
        "configs": [c.to_dict() for c in configs],
        "metrics": {k: v for k, v in final.metrics.items() if not k.startswith("shuffled/")},
        "shuffled": {k.removeprefix("shuffled/"): v for k, v in final.metrics.items() if k.startswith("shuffled/")},
        "history": history,
        "train_seconds": round(sum(r.train_seconds for r in results), 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "trainable_parameters": final.trainable_parameters,
        "optimizer_state_bytes": final.optimizer_state_bytes,
        "step_seconds": round(final.train_seconds / max(final.steps, 1), 4),  # the last stage's training loop
        "text_perplexity": forgetting,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
    }


def machine() -> str:
    import torch

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


def write_record(setup: Setup, record: dict) -> Path:
    path = record_path(setup, record["cell"], record["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda p: p.write_text(json.dumps(record, indent=1) + "\n"))
    return path


def run_grid(
    setup: Setup,
    cells: Sequence[Cell],
    seeds: Sequence[int],
    jobs: int = 1,
    say: Callable[[str], None] = lambda line: print(line, flush=True),  # at once, also into a file
) -> list[dict]:
    """Run every (cell, seed) without a current record, `jobs` at a time; return all records of the grid."""
    todo = [(cell, seed) for cell in cells for seed in seeds if finished(setup, cell, seed) is None]
    skipped = len(cells) * len(seeds) - len(todo)
    say(reuse_line(setup, skipped, len(todo)))
    started = time.perf_counter()
    done = 0

    def report(record: dict) -> None:
        nonlocal done
        done += 1
        write_record(setup, record)
        m, s = record["metrics"], record["shuffled"]
        say(
            f"[{done}/{len(todo)}] {setup.grid} {record['cell']} seed {record['seed']}: "
            f"CIDEr-D {m.get('cider_d', float('nan')):.2f} (shuffled {s.get('cider_d', float('nan')):.2f}), "
            f"QA exact match {m.get('qa_exact_match', float('nan')):.2f} "
            f"(shuffled {s.get('qa_exact_match', float('nan')):.2f}), {record['wall_seconds']:.0f} s"
        )

    failed: list[str] = []

    def failure(cell: Cell, seed: int, error: Exception) -> None:
        """A run that raised: said in one line, and the grid goes on (every other record is still written)."""
        log = setup.work_dir / setup.grid / cell.name / f"seed{seed}" / "console.log"
        failed.append(f"{cell.name} seed {seed}")
        say(f"{setup.grid} {cell.name} seed {seed} failed: {type(error).__name__}: {error} (its log: {log})")

    if jobs <= 1 or len(todo) <= 1:
        for cell, seed in todo:
            try:
                record = run_cell(setup, cell, seed)
            except (UserError, RuntimeError, ValueError, OSError) as error:
                failure(cell, seed, error)
                continue
            report(record)
    else:
        # Separate processes (spawned: a fresh interpreter each, no forked torch state), each running whole cells.
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(run_cell, setup, cell, seed): (cell, seed) for cell, seed in todo}
            for future in as_completed(futures):
                try:
                    record = future.result()
                except Exception as error:  # raised in the worker, re-raised here: one line, then the next run
                    failure(*futures[future], error)
                    continue
                report(record)
    if failed:
        raise UserError(f"{len(failed)} of {len(todo)} runs of {setup.grid} failed ({'; '.join(failed)}); the others' "
                        "records are written, and a rerun trains only what is missing")  # fmt: skip
    wall = time.perf_counter() - started
    say(f"{setup.grid}: trained {len(todo)} runs in {wall / 60:.1f} min; reused {skipped} records")
    records = [finished(setup, cell, seed) for cell in cells for seed in seeds]
    records = [r for r in records if r is not None]
    summary = {"grid": setup.grid, "cells_run": len(todo), "cells_reused": skipped, "wall_seconds": round(wall, 1)}
    summary |= {"jobs": jobs, "seeds": list(seeds), "command": setup.command, "machine": machine()}
    summary["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if todo:  # the time of the last run that trained something (a rerun that only skips keeps it)
        path = setup.results_dir / setup.grid / "timing.json"
        write_atomically(path, lambda p: p.write_text(json.dumps(summary, indent=1) + "\n"))
    return records


# ---------------------------------------------------------------------------------------------------------------------
# Tables and figures
# ---------------------------------------------------------------------------------------------------------------------


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def by_cell(records: Sequence[dict]) -> dict[str, list[dict]]:
    cells: dict[str, list[dict]] = {}
    for record in records:
        cells.setdefault(record["cell"], []).append(record)
    return cells


def value(record: dict, key: str) -> float | None:
    if key.startswith("shuffled/"):
        return record["shuffled"].get(key.removeprefix("shuffled/"))
    return record["metrics"].get(key)


def write_table(setup: Setup, records: Sequence[dict]) -> Path:
    """results/<grid>/table.md: one row per cell, mean ± sd over its seeds."""
    lines = [f"| cell | seeds | {' | '.join(title for _, title in TABLE_METRICS)} | train time (s) | trainable |"]
    lines.append("|" + "---|" * (len(TABLE_METRICS) + 4))
    for name, rows in by_cell(records).items():
        cells = [name, str(len(rows))]
        for key, _ in TABLE_METRICS:
            values = [v for v in (value(r, key) for r in rows) if v is not None]
            cells.append("–" if not values else "{:.3f} ± {:.3f}".format(*mean_sd(values)))
        cells.append("{:.0f} ± {:.0f}".format(*mean_sd([r["train_seconds"] for r in rows])))
        cells.append(f"{rows[0]['trainable_parameters']:,}")
        lines.append("| " + " | ".join(cells) + " |")
    timing_path = setup.results_dir / setup.grid / "timing.json"
    header = [f"# {setup.grid}", ""]
    if timing_path.exists():
        timing = json.loads(timing_path.read_text())
        header += [
            f"`{timing['command']}`: {timing['cells_run']} cells in {timing['wall_seconds'] / 60:.1f} min "
            f"({timing['jobs']} at a time; {timing['machine']}; {timing['finished']}).",
            "",
        ]
    header += ["Held-out metrics of the last epoch (validation images), mean ± sd over seeds.", ""]
    path = setup.results_dir / setup.grid / "table.md"
    write_atomically(path, lambda p: p.write_text("\n".join(header + lines) + "\n"))
    return path


# How each grid is drawn: the x axis (a label of its cells) and the series (another label, or None).
PLOTS = {"transfer": ("K", "lm"), "smoke": ("K", "lm"), "views": ("tokens", "view"), "two-stage": ("recipe", None)}


def plot_metrics(records: Sequence[dict], grid: str):
    """Held-out CIDEr-D and QA exact match against the grid's x axis, mean ± sd over seeds, with the shuffled-image
    control dashed: a matplotlib Figure."""
    import matplotlib.pyplot as plt

    x_key, series_key = PLOTS.get(grid, ("K", None))
    fig, axes = plt.subplots(1, len(FIGURE_METRICS), figsize=(5 * len(FIGURE_METRICS), 3.6))
    groups: dict[str, list[tuple[Any, list[dict]]]] = {}
    for rows in by_cell(records).values():
        series = str(rows[0]["labels"].get(series_key, "")) if series_key else ""
        groups.setdefault(series, []).append((rows[0]["labels"][x_key], rows))
    categorical = any(isinstance(x, str) for points in groups.values() for x, _ in points)
    for ax, (key, title) in zip(axes, FIGURE_METRICS, strict=True):
        for k, (series, points) in enumerate(sorted(groups.items())):
            xs = [x for x, _ in points]
            positions = list(range(len(xs))) if categorical else xs
            shift = 0.08 * (k - (len(groups) - 1) / 2) if categorical else 0.0
            for metric, style in ((key, "-o"), (f"shuffled/{key}", ":x")):
                stats = [mean_sd([v for r in rows if (v := value(r, metric)) is not None] or [float("nan")])
                         for _, rows in points]  # fmt: skip
                label = (series or title) + (" (images shuffled)" if metric.startswith("shuffled/") else "")
                ax.errorbar([p + shift for p in positions], [m for m, _ in stats], yerr=[s for _, s in stats],
                            fmt=style, color=f"C{k}", capsize=3, label=label)  # fmt: skip
            if categorical:
                ax.set_xticks(positions, xs)
        ax.set_xlabel({"K": "K (top decoder blocks trained)", "tokens": "visual tokens"}.get(x_key, x_key))
        ax.set_title(f"held-out {title}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_curves(records: Sequence[dict]):
    """Validation CIDEr-D and QA exact match against the optimizer step, mean over seeds: a matplotlib Figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(FIGURE_METRICS), figsize=(5 * len(FIGURE_METRICS), 3.6))
    for ax, (key, title) in zip(axes, FIGURE_METRICS, strict=True):
        for k, (name, rows) in enumerate(by_cell(records).items()):
            # The k-th validation of each seed, averaged (seeds split the data differently, so their epochs end a
            # few steps apart: the points are aligned by their order, at the seeds' mean step).
            curves = [[p for p in r["history"] if key in p] for r in rows]
            points = list(zip(*curves, strict=False))  # truncated to the shortest curve
            steps = [statistics.fmean(p["step"] for p in point) for point in points]
            means = [statistics.fmean(p[key] for p in point) for point in points]
            ax.plot(steps, means, "-o", markersize=3, color=f"C{k % 10}", label=name)
        ax.set_xlabel("optimizer step")
        ax.set_title(f"validation {title} during training")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def write_figures(setup: Setup, records: Sequence[dict]) -> list[Path]:
    """results/<grid>/metrics_vs_<x>.png and curves.png."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    out = setup.results_dir / setup.grid
    paths = [out / f"metrics_vs_{PLOTS.get(setup.grid, ('K',))[0].lower()}.png", out / "curves.png"]
    for path, fig in zip(paths, (plot_metrics(records, setup.grid), plot_curves(records)), strict=True):
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return paths
