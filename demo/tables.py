"""The demo's numbers in README.md and docs/demo.md, made from the results of the runs kept in `demo/results/`.

    python -m demo.tables            # rewrite the demo's tables in README.md and docs/demo.md from demo/results/
    python -m demo.tables --check    # exit 1 when a page's table is not what the results give (tests do this check)

Each file in `demo/results/` is the `demo.json` of one `python train.py --demo` (demo/report.py writes it into the
run folder), copied here unchanged: its command, seed, machine, date, seconds, evaluation protocol and metrics. A
number of the demo quoted in the README or docs/demo.md has that file as its one home: the pages hold it between
`<!-- BEGIN generated: demo NAME -->` and `<!-- END generated: demo NAME -->` markers, written by this module, and
`tests/test_docs_numbers.py` fails when a page and the results disagree. Text outside the markers is kept.

- `REFERENCE` is the run the main table shows; every file in the folder counts for the spread (seeds, machines).
- `EARLIER` are records of the same recipe run by `python -m experiments transfer` (its cell `random-k2` is the
  demo's recipe) on an earlier version of the code and another machine: they count for the spread too.
- The number of questions is not in the results: it is counted from the data the run evaluated (its settings and
  seed), which the shapes set makes cheap.

Read next: `demo/report.py` (what a run writes), `docs/demo.md` (the recipe, and where the numbers live).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "demo" / "results"
REFERENCE = "amd-epyc-2core-seed0.json"  # the run the main table shows (README.md, docs/demo.md)
# The pages and the generated blocks each holds, in the order they appear.
PAGES = {"README.md": ("table", "spread"), "docs/demo.md": ("table", "runs")}

ROWS = (  # (shown as, metric key, its shuffled-image control's key or None)
    ("CIDEr-D", "cider_d", "shuffled/cider_d"),
    ("BLEU-4", "bleu4", "shuffled/bleu4"),
    ("question answering, exact match", "qa_exact_match", "shuffled/qa_exact_match"),
)
RECALL = ("i2t_recall@1", "t2i_recall@1")
# The demo's recipe as `python -m experiments transfer` ran it on 2026-12-01 (that day's code, on that day's 2-core
# machine): its records, in the experiment runner's form (experiments/runner.py).
EARLIER = tuple(f"experiments/results/transfer/cells/random-k2-seed{seed}.json" for seed in (0, 1))
FOLDERS = ("--output-dir", "--cache-dir")  # where a run wrote: left out of the command as the pages show it


def load_results(folder: Path = RESULTS_DIR) -> dict[str, dict[str, Any]]:
    """file name -> a run's results, in name order."""
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def load_earlier() -> dict[str, dict[str, Any]]:
    """path -> an experiment record of the demo's recipe, with its metrics and the shuffled control in one dict."""
    records = {}
    for path in EARLIER:
        record = json.loads((REPO / path).read_text())
        shuffled = {f"shuffled/{k}": v for k, v in record["shuffled"].items()}
        records[path] = {**record, "metrics": {**record["metrics"], **shuffled}}
    return records


def count_questions(results: Mapping[str, Any], cache_dir: str | Path) -> int:
    """The questions of the images the run evaluated: the first `eval_images` of its validation split, loaded (or
    generated into `cache_dir`) as training loads them."""
    from data import load_dataset

    settings = results["settings"]
    splits, _ = load_dataset(settings["data"], cache_dir=Path(cache_dir), split=settings["split"], seed=results["seed"])
    return sum(len(record.qa) for record in splits.val[: settings["eval_images"]])


def command(results: Mapping[str, Any]) -> str:
    """The run's command as the pages show it: the folders it wrote to left out (they change no number)."""
    words, shown = shlex.split(results["command"]), []
    while words:
        word = words.pop(0)
        if word in FOLDERS:
            words = words[1:]
        elif not word.startswith(tuple(f"{flag}=" for flag in FOLDERS)):
            shown.append(word)
    return shlex.join(shown)


def machine(results: Mapping[str, Any]) -> str:
    m = results["machine"]
    device = f", {m['gpu']}" if "gpu" in m else ""
    return f"{m['cores']}-core {m['cpu']}{device}"


def table(results: Mapping[str, Any], questions: int) -> str:
    """The reference run: what was run where, and its held-out metrics beside the shuffled-image control's."""
    m, p, threads = results["metrics"], results["protocol"], results["machine"]["threads"]
    lines = [
        paragraph(
            f"One run of `{command(results)}` (seed {results['seed']}) on a {machine(results)} ({threads} thread{'s' if threads != 1 else ''}, torch "
            f"{results['machine']['torch']}), {results['finished'][:10]}, {results['seconds']:.0f} s from the parsed "
            f"command line to the last evaluation (`demo/results/{REFERENCE}`). Held out: {p['images']} validation "
            f"images, {p['captions']} captions, {questions} questions."
        ),
        "",
        "| held-out metric | with its image | images shuffled |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {m[key]:.2f} | {m[control]:.2f} |" for name, key, control in ROWS]
    lines.append(
        f"| image→text Recall@1 / text→image Recall@1 (galleries of {p['gallery_size']} images) | "
        f"{m[RECALL[0]]:.2f} / {m[RECALL[1]]:.2f} | |"
    )
    return "\n".join(lines)


def paragraph(text: str) -> str:
    """Wrapped as the pages' own text is (118 columns), never inside a word or a code span."""
    kept = re.sub(r"`[^`]*`", lambda span: span.group(0).replace(" ", "\0"), text)  # a code span is one word
    return textwrap.fill(kept, width=118, break_long_words=False, break_on_hyphens=False).replace("\0", " ")


def span(values: Sequence[float]) -> str:
    low, high = f"{min(values):.2f}", f"{max(values):.2f}"
    return low if low == high else f"{low}–{high}"


def spread(runs: Mapping[str, Mapping[str, Any]], earlier: Mapping[str, Mapping[str, Any]]) -> str:
    """One paragraph: the range of each metric over every run kept and the earlier records, and what they are."""
    every = [*runs.values(), *earlier.values()]
    metric = {key: [r["metrics"][key] for r in every] for _, key, _ in ROWS}
    recall = {key: [r["metrics"][key] for r in every] for key in RECALL}
    seeds = ", ".join(map(str, sorted({r["seed"] for r in runs.values()})))
    machines = "; ".join(sorted({machine(r) for r in runs.values()}))
    then = sorted({r["finished"][:10] for r in earlier.values()})
    return paragraph(
        f"Across seeds and machines: the {len(runs)} runs in `demo/results/` (seeds {seeds}; {machines}) and the same "
        f"recipe as `python -m experiments transfer` ran it with the code and machine of {', '.join(then)} (cell "
        f"`random-k2`, seeds {', '.join(str(r['seed']) for r in earlier.values())}; "
        f"{'; '.join(sorted({r['machine'] for r in earlier.values()}))}: `experiments/results/transfer/cells/`) give "
        f"CIDEr-D {span(metric['cider_d'])}, BLEU-4 {span(metric['bleu4'])}, exact match "
        f"{span(metric['qa_exact_match'])} and Recall@1 {span(recall[RECALL[0]])} / {span(recall[RECALL[1]])}. A "
        "difference smaller than that is not a finding ([docs/demo.md](docs/demo.md#seeds-and-machines))."
    )


def runs_table(runs: Mapping[str, Mapping[str, Any]], earlier: Mapping[str, Mapping[str, Any]]) -> str:
    """Every run kept and every earlier record: where and when, seconds, metrics, exact match after each epoch."""
    lines = [
        "| results file | command | machine | date | seconds (training) | CIDEr-D | BLEU-4 | exact match (after each "
        "epoch) | R@1 i→t / t→i |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        m = r["metrics"]
        epochs = ", ".join(f"{h['qa_exact_match']:.2f}" for h in r["history"] if float(h["epoch"]).is_integer())
        lines.append(
            f"| `demo/results/{name}` | `{command(r)}` | {machine(r)}, load {r['machine'].get('load_average', '?')} | "
            f"{r['finished'][:10]} | {r['seconds']:.0f} ({r['train_seconds']:.0f}) | {m['cider_d']:.2f} | "
            f"{m['bleu4']:.2f} | {m['qa_exact_match']:.2f} ({epochs}) | {m[RECALL[0]]:.2f} / {m[RECALL[1]]:.2f} |"
        )
    for path, r in earlier.items():
        m = r["metrics"]
        lines.append(
            f"| `{path}` | `python -m experiments transfer` (seed {r['seed']}) | {r['machine']} | "
            f"{r['finished'][:10]} | - ({r['train_seconds']:.0f}) | {m['cider_d']:.2f} | {m['bleu4']:.2f} | "
            f"{m['qa_exact_match']:.2f} | {m[RECALL[0]]:.2f} / {m[RECALL[1]]:.2f} |"
        )
    return "\n".join(lines)


def blocks(
    runs: Mapping[str, Mapping[str, Any]], earlier: Mapping[str, Mapping[str, Any]], questions: int
) -> dict[str, str]:
    """Every generated block's text, by name."""
    return {
        "table": table(runs[REFERENCE], questions),
        "spread": spread(runs, earlier),
        "runs": runs_table(runs, earlier),
    }


def markers(name: str) -> tuple[str, str]:
    return f"<!-- BEGIN generated: demo {name} -->", f"<!-- END generated: demo {name} -->"


def written(page: str, name: str) -> str | None:
    """What the page holds between block `name`'s markers (None when it has no such block)."""
    begin, end = markers(name)
    found = re.search(re.escape(begin) + r"\n(.*?)\n?" + re.escape(end), (REPO / page).read_text(), flags=re.DOTALL)
    return found.group(1) if found else None


def rewrite(page: str, made: Mapping[str, str]) -> bool:
    """Put the page's blocks in place; True when the page changed. A page without a block's markers is an error."""
    path = REPO / page
    text = before = path.read_text()
    for name in PAGES[page]:
        begin, end = markers(name)
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), flags=re.DOTALL)
        if not pattern.search(text):
            raise SystemExit(f"error: {page} has no {begin} ... {end} block")
        block = f"{begin}\n{made[name]}\n{end}"
        text = pattern.sub(lambda _, block=block: block, text)
    if text != before:
        path.write_text(text)
    return text != before


def stale(made: Mapping[str, str]) -> list[str]:
    """The blocks whose text on their page differs from what the results give, as `page: block`."""
    return [f"{page}: {name}" for page, names in PAGES.items() for name in names if written(page, name) != made[name]]


def build_parser():
    from errors import OneLineArgumentParser
    from runtime.env import DEFAULT_CACHE_DIR

    parser = OneLineArgumentParser(prog="python -m demo.tables", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a table is out of date")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="where the shapes set is (or is made)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from errors import UserError
    from runtime.env import check_folder

    args = build_parser().parse_args(argv)
    runs = load_results()
    try:
        cache_dir = check_folder(args.cache_dir, "--cache-dir")
        made = blocks(runs, load_earlier(), count_questions(runs[REFERENCE], cache_dir))
    except UserError as e:  # the shapes set cannot be read or made there
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        out_of_date = stale(made)
        for block in out_of_date:
            print(f"out of date: {block} (python -m demo.tables rewrites it)", file=sys.stderr)
        return 1 if out_of_date else 0
    for page in PAGES:
        print(f"{page}: {'rewritten' if rewrite(page, made) else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
