"""A number the docs quote has one home, the results file its command writes, and the page agrees with it.

- The demo (README.md, docs/demo.md): `train.py --demo` writes `demo.json` into its run folder; the runs quoted are
  copied into `demo/results/`, and the pages' tables are generated from them by `python -m demo.tables`. Here: the
  tables are what the results give, the held-out questions are counted from the shapes set itself, and the session's
  demo run writes a `demo.json` of the same form as the copies.
- The benchmarks (docs/performance.md): `python -m bench.*` write BENCHMARKS.md's sections; every number of
  performance.md's findings is one of BENCHMARKS.md's.
- The experiments (EXPERIMENTS.md, docs/experiments.md, docs/explain.md): `python -m experiments` writes
  `experiments/results/<grid>/table.md`, `python -m explain.pointing --out` writes `experiments/results/pointing/`;
  EXPERIMENTS.md's grid tables are rows of those tables, and the numbers quoted from them are theirs (to the digits
  quoted).

Read next: `demo/tables.py` (the demo's tables), `tests/test_docs.py` (the docs' flags and runnable code).
"""

from __future__ import annotations

import json
import re

from conftest import REPO

from demo import tables

NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,]*\d)|(?<![\w.,])\d+(?:\.\d+)?")


def numbers(text: str) -> list[str]:
    """The numbers written in `text`, as written ("1,394", "0.96", "2026")."""
    return NUMBER.findall(text)


def value(number: str) -> float:
    return float(number.replace(",", ""))


def found_in(number: str, home: list[str]) -> bool:
    """Whether `number` is one of `home`'s numbers, to the digits it is written with (3.03 is 3.027 quoted)."""
    digits = len(number.split(".")[1]) if "." in number else 0
    return any(abs(value(h) - value(number)) <= 0.5 * 10**-digits + 1e-9 for h in home)


def section(page: str, heading: str) -> str:
    """The text of `page` under `heading` (a whole Markdown heading line), up to the next heading of any level."""
    text = (REPO / page).read_text()
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    following = re.search(r"^#+ ", text[start:], flags=re.MULTILINE)
    return text[start : start + following.start()] if following else text[start:]


def test_numbers_are_read_as_written():
    assert numbers("1,394 samples/s; 0.96x, 2026-11-26, Qwen3-0.6B, 31,783 x 197; ViT-B/16") == [
        "1,394", "0.96", "2026", "11", "26", "0.6", "31,783", "197", "16",
    ]  # fmt: skip
    assert found_in("3.03", ["3.027"]) and not found_in("3.03", ["3.036"]) and found_in("1,394", ["1394"])


# ----------------------------------------------------------------------------------------------------------- the demo


def test_the_demo_tables_are_the_results(session_cache):
    runs, earlier = tables.load_results(), tables.load_earlier()
    assert tables.REFERENCE in runs
    made = tables.blocks(runs, earlier, tables.count_questions(runs[tables.REFERENCE], session_cache))
    assert not tables.stale(made), f"out of date: {tables.stale(made)}; run python -m demo.tables"


def test_the_experiments_question_count_is_the_data(session_cache):
    """EXPERIMENTS.md's held-out questions of seed 0, counted from that seed's shapes set (the session's)."""
    count = tables.count_questions(tables.load_results()[tables.REFERENCE], session_cache)
    assert f"{count} questions with seed 0;" in " ".join((REPO / "EXPERIMENTS.md").read_text().split())


def test_a_demo_run_writes_its_results_as_the_kept_ones_are(trained_demo):
    output_dir, _, checkpoint = trained_demo
    written = json.loads((checkpoint.parent / "demo.json").read_text())
    kept = tables.load_results()[tables.REFERENCE]
    assert sorted(written) == sorted(kept)
    optional = {"gpu", "load_average"}  # a GPU's name on a GPU; the load where the system reports it
    assert set(written["machine"]) - optional == set(kept["machine"]) - optional
    assert written["command"].startswith("python train.py --demo") and written["seed"] == 0
    last = json.loads((checkpoint.parent / "metrics.json").read_text())["epoch_1/val"]
    assert written["protocol"] == last["protocol"]
    assert written["metrics"] == {k: v for k, v in last.items() if k != "protocol"}
    assert "demo.json" in (output_dir / "console.txt").read_text()  # the run says where its results are


# ----------------------------------------------------------------------------------------------------- the benchmarks


def generated_sections(page: str) -> str:
    """What the page holds between `BEGIN generated` and `END generated` markers: what its scripts wrote."""
    return "\n".join(
        re.findall(r"<!-- BEGIN generated: .*? -->(.*?)<!-- END generated", (REPO / page).read_text(), re.S)
    )


def enclosing_parenthesis(text: str, at: int) -> str:
    """The innermost parenthesised text around position `at` ("" when there is none)."""
    start, depth = at, 0
    while start > 0:
        start -= 1
        depth += {")": 1, "(": -1}.get(text[start], 0)
        if depth < 0:
            return text[start : text.find(")", at) + 1]
    return ""


def test_performance_quotes_benchmarks():
    """Every number of performance.md's findings is one of BENCHMARKS.md's; a speed or memory ratio (`1.27x`) is one
    of the final runs, the sections its scripts wrote, unless its parenthesis says it is from an earlier run or
    another machine (BENCHMARKS.md keeps those in its text)."""
    home, final = numbers((REPO / "BENCHMARKS.md").read_text()), numbers(generated_sections("BENCHMARKS.md"))
    findings = section("docs/performance.md", "## What they found")
    assert len(numbers(findings)) > 20
    missing = [n for n in numbers(findings) if n not in home]
    assert not missing, f"docs/performance.md quotes numbers BENCHMARKS.md does not have: {missing}"
    not_final = [
        ratio.group(0)
        for ratio in re.finditer(r"(\d+\.\d+)x", findings)
        if ratio.group(1) not in final
        and not re.search(r"earlier|another", enclosing_parenthesis(findings, ratio.start()))
    ]
    assert not not_final, f"docs/performance.md: ratios not of BENCHMARKS.md's final runs: {not_final}"


# ---------------------------------------------------------------------------------------------------- the experiments


def grid_rows(text: str) -> list[str]:
    """The rows of every table whose header starts `| cell | seeds |` (the experiment runner's table.md)."""
    rows, inside = [], False
    for line in text.splitlines():
        inside = line.startswith("| cell | seeds |") or (inside and line.startswith("|"))
        if inside and not line.startswith(("| cell | seeds |", "|---")):
            rows.append(line)
    return rows


def test_experiments_tables_are_the_grids_tables():
    rows = grid_rows((REPO / "EXPERIMENTS.md").read_text())
    assert len(rows) == 16  # transfer 8, views 6, two-stage 2
    homes = "\n".join(p.read_text() for p in sorted((REPO / "experiments" / "results").glob("*/table.md")))
    assert not [row for row in rows if row not in homes.splitlines()]


def test_the_what_trains_table_is_the_grids_table():
    """EXPERIMENTS.md section 7's table: the rows `python -m experiments what-trains` wrote, every one of them."""
    heading = "## 7. Which parameters should learn? What trains, at what cost (`python -m experiments what-trains`)"
    text = section("EXPERIMENTS.md", heading)
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| method |")]
    home = (REPO / "experiments" / "results" / "what-trains" / "table.md").read_text().splitlines()
    methods = [line for line in home if line.startswith("| ") and "(lr_" in line.split("|")[3]]
    assert len(rows) == 10 and rows == methods


def test_quoted_experiment_numbers_are_the_results():
    transfer = numbers((REPO / "experiments/results/transfer/table.md").read_text())
    pointing = numbers((REPO / "experiments/results/pointing/table.md").read_text())
    quotes = [  # (page, heading, its tables only?, the numbers of its results, numbers there that are not results)
        ("docs/experiments.md", "## What it measured", False, transfer, {"0.6"}),  # the target
        ("docs/explain.md", "## The two methods", True, pointing, {"2020"}),  # a paper's year
        ("EXPERIMENTS.md", "## 6. Where the model looks: the pointing game (`explain/`)", True, pointing, {"2020"}),
    ]
    wrong = []
    for page, heading, tables_only, home, not_results in quotes:
        text = section(page, heading)
        if tables_only:
            text = "\n".join(line for line in text.splitlines() if line.startswith("|"))
        wrong += [f"{page}: {n}" for n in numbers(text) if n not in not_results and not found_in(n, home)]
    assert not wrong, wrong
