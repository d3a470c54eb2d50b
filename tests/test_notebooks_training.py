"""The notebooks that train a model (05_experiments, 06_where_it_looks) run top to bottom, headless and offline.

The same check as tests/test_notebooks.py, in a file of its own: `make test` runs two workers with `--dist loadfile`,
which keeps a file on one worker, so these two minutes of notebooks run beside the other four instead of after them.
"""

from __future__ import annotations

import dataclasses

import pytest
from test_experiments import QUICK
from test_notebooks import PARAMETERS, TRAINING, _kernel_environment, run_notebook  # noqa: F401 (the fixture applies here too)


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINING)
def test_training_notebook_runs_top_to_bottom(name, session_cache):
    # 05 pretrains the demo LM into its cache: in the session's cache, with test_experiments.py's settings, it is built
    # once for both, by whichever comes first. Its live cell trains 20 steps instead of 40 (it checks no score).
    parameters = dict(PARAMETERS.get(name, {}))
    if name == "05_experiments":
        parameters |= {"CACHE_DIR": session_cache, "PRETRAIN": dataclasses.asdict(QUICK), "LIVE_STEPS": 20}
    run_notebook(name, parameters)
