"""The notebooks that train a model (05_experiments, 06_where_it_looks) run top to bottom, headless and offline.

The same check as tests/test_notebooks.py, in a file of its own: `make test` runs two workers with `--dist loadfile`,
which keeps a file on one worker, so these two minutes of notebooks run beside the other four instead of after them.
"""

from __future__ import annotations

import pytest
from test_notebooks import PARAMETERS, TRAINING, _kernel_environment, run_notebook  # noqa: F401 (the fixture applies here too)


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINING)
def test_training_notebook_runs_top_to_bottom(name, session_cache):
    # 05 pretrains the demo LM (one epoch, seed 0) into its cache; in the session's cache it is built once for it and
    # for tests/test_experiments.py, whichever comes first.
    extra = {"CACHE_DIR": session_cache} if name == "05_experiments" else {}
    run_notebook(name, {**PARAMETERS.get(name, {}), **extra})
