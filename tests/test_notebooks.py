"""The notebooks in notebooks/ run top to bottom, headless, offline, and are committed without outputs.

Each notebook is executed with nbclient (https://nbclient.readthedocs.io) in a fresh `python3` kernel, from the
notebooks' own directory, as a reader would run it in Jupyter. The notebooks assert their own checks (our blocks
against transformers', hand-computed metrics against `metrics`, each "Why" cell's and exercise's lesson), so a wrong
result stops them with an error and fails the test, like any exception. After the last cell, the cells tagged
`rerun` (the "by hand" cells and checks a reader may run again) run once more in the same kernel: a notebook whose
later cells change a name they read fails there.

The `python3` kernel runs on the interpreter that runs pytest: jupyter_client replaces a kernel command that starts
with `python` by `sys.executable` (`KernelManager.format_kernel_cmd`), so the kernel sees this venv's packages.
`test_kernel_runs_on_this_interpreter` checks that rather than trusting it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from nbclient.exceptions import CellExecutionError  # noqa: E402

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = [
    "01_decoder_from_scratch",
    "02_vision_encoders",
    "03_bridge_and_training",
    "04_evaluation",
    "05_experiments",
    "06_where_it_looks",
]
CELL_TIMEOUT_S = 300  # generous for a loaded CI machine; each notebook takes well under two minutes in all
SWITCH_TITLE = "Switch to the real weights and data"
RERUN = "rerun"  # the tag of cells that run again after the whole notebook (see `with_reruns`)


def execute_notebook(nb: nbformat.NotebookNode, cwd: Path, timeout: int = CELL_TIMEOUT_S) -> nbformat.NotebookNode:
    """Run every cell of `nb` in a fresh `python3` kernel started in `cwd`; return it with its outputs.

    Raises nbclient's `CellExecutionError` at the first cell that raises (the cells after it do not run).
    """
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": str(cwd)}}
    )
    return client.execute()


def code_cells(nb: nbformat.NotebookNode) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


@pytest.fixture(autouse=True)
def _kernel_environment(monkeypatch, tmp_path):
    """Kernels inherit this environment.

    - TMPDIR: the notebooks' temporary folders go under pytest's tmp_path.
    - HF_HUB_OFFLINE=1: an accidental hub access fails at once instead of retrying (the notebooks must run offline).
    - OMP_WAIT_POLICY=PASSIVE: OpenMP threads that wait for work sleep instead of spinning. The notebooks use 2
      threads; on a CPU shared with other jobs, spinning threads steal the time their partner needs and a small
      model runs 10-20x slower (measured on the 2-core test machine). Results are unchanged.
    """
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")


def test_the_notebooks_are_committed_without_outputs():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in code_cells(nb):
            assert cell.outputs == [], f"{path.name}: a code cell has outputs (strip them before committing)"
            assert cell.execution_count is None, f"{path.name}: a code cell has an execution count"


def test_each_notebook_has_a_why_an_exercise_and_cells_to_rerun():
    """Every notebook says why (a "## Why: ..." section) and asks something of the reader (a "## Exercise" section,
    whose answer a later cell checks), and tags cells that must still run after the whole notebook has."""
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        headings = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()]
        assert any(h.startswith("## Why") for h in headings), f"{path.name}: no '## Why' section"
        assert any(h.startswith("## Exercise") for h in headings), f"{path.name}: no '## Exercise' section"
        assert any(RERUN in c.metadata.get("tags", ()) for c in code_cells(nb)), f"{path.name}: no cell tagged {RERUN}"


def test_each_notebook_has_the_switch_cell_at_the_top():
    for path in NOTEBOOKS:
        cells = code_cells(nbformat.read(path, as_version=4))
        switch = [i for i, cell in enumerate(cells) if SWITCH_TITLE in cell.source]
        assert switch and switch[0] <= 1, f"{path.name}: no '{SWITCH_TITLE}' cell among the first two code cells"
        assert "REAL = False" in cells[switch[0]].source, f"{path.name}: the switch cell must default to REAL = False"
        assert "parameters" in cells[switch[0]].metadata.get("tags", ()), (
            f"{path.name}: tag the switch cell 'parameters'"
        )


# The two that train a model run from tests/test_notebooks_training.py: a file of their own, so that `make test`'s two
# workers (`--dist loadfile` keeps a file on one worker) run them beside these four rather than after them.
TRAINING = ["05_experiments", "06_where_it_looks"]


# What the tests change in a notebook's switch cell (see `with_parameters`): fewer training steps where the notebook's
# own checks still hold with them, and what the session already built (its cache, its demo run) where a notebook
# would build the same thing (tests/test_notebooks_training.py adds those).
PARAMETERS = {
    # The loss still falls and the exercises' lessons hold (300 for a reader: captions that read well).
    "03_bridge_and_training": {"STEPS": 40},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in EXPECTED if name not in TRAINING])
def test_notebook_runs_top_to_bottom(name):
    run_notebook(name, PARAMETERS.get(name))


def with_parameters(nb: nbformat.NotebookNode, parameters: dict) -> nbformat.NotebookNode:
    """`nb` with a cell that sets `parameters` right after its switch cell (tagged "parameters"), as papermill does.

    The switch cell's values are what a reader runs; a test may lighten them (fewer training steps) or point them at
    what the session already built. The injected cell is papermill's "injected-parameters" cell, so
    `papermill notebooks/06_where_it_looks.ipynb out.ipynb -p TRAIN_STEPS 300` does the same from the shell.
    """
    at = next(i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", ()))
    lines = [f"{key} = {str(value) if isinstance(value, Path) else value!r}" for key, value in parameters.items()]
    injected = nbformat.v4.new_code_cell(
        "# Parameters\n" + "\n".join(lines), metadata={"tags": ["injected-parameters"]}
    )
    nb.cells.insert(at + 1, injected)
    return nb


def with_reruns(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """`nb` with a copy of each cell tagged `rerun` appended, in order: after a full run, as a reader re-runs them."""
    tagged = [cell for cell in code_cells(nb) if RERUN in cell.metadata.get("tags", ())]
    nb.cells.extend(nbformat.v4.new_code_cell(cell.source) for cell in tagged)
    return nb


def run_notebook(name: str, parameters: dict | None = None) -> None:
    """Execute notebooks/{name}.ipynb top to bottom, then its `rerun` cells again: every code cell runs, and it draws
    at least one plot."""
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    if parameters:
        nb = with_parameters(nb, parameters)
    nb = with_reruns(nb)
    started = time.perf_counter()
    execute_notebook(nb, NOTEBOOK_DIR)
    print(f"{name}: {time.perf_counter() - started:.1f} s")
    cells = code_cells(nb)
    assert all(cell.execution_count is not None for cell in cells)
    images = [o for cell in cells for o in cell.outputs if "image/png" in o.get("data", {})]
    assert images, f"{name} drew no plot"


def test_a_failing_cell_fails_the_run():
    nb = nbformat.read(NOTEBOOK_DIR / "04_evaluation.ipynb", as_version=4)
    first_code = next(i for i, cell in enumerate(nb.cells) if cell.cell_type == "code")
    nb.cells.insert(first_code + 1, nbformat.v4.new_code_cell('raise RuntimeError("deliberate failure")'))
    with pytest.raises(CellExecutionError, match="deliberate failure"):
        execute_notebook(nb, NOTEBOOK_DIR)
    later = code_cells(nb)[2:]
    assert later and all(cell.execution_count is None for cell in later), "cells after the failure must not run"


def test_kernel_runs_on_this_interpreter():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)")])
    execute_notebook(nb, NOTEBOOK_DIR)
    assert nb.cells[0].outputs[0].text.strip() == sys.prefix
