"""The notebooks that train or explain a trained model (05_experiments, 06_where_it_looks) run top to bottom, headless
and offline.

The same check as tests/test_notebooks.py, in a file of its own: `make test` runs two workers with `--dist loadfile`,
which keeps a file on one worker, so these notebooks run beside the other four instead of after them. Neither trains
what the session already has: 05 reads the pretrained demo LM from the session's cache, and 06 explains the session's
demo run (`trained_demo`) instead of training its own.
"""

from __future__ import annotations

import dataclasses

import pytest
from test_experiments import QUICK
from test_notebooks import PARAMETERS, TRAINING, _kernel_environment, run_notebook  # noqa: F401 (the fixture applies here too)


@pytest.mark.slow
def test_experiments_notebook_runs_top_to_bottom(session_cache):
    # 05 pretrains the demo LM into its cache: in the session's cache, with test_experiments.py's settings, it is built
    # once for both, by whichever comes first. Its live cell trains 20 steps instead of 40 (what it checks holds for
    # any run much shorter than the committed one).
    name = "05_experiments"
    assert name in TRAINING
    parameters = {"CACHE_DIR": session_cache, "PRETRAIN": dataclasses.asdict(QUICK), "LIVE_STEPS": 20}
    run_notebook(name, PARAMETERS.get(name, {}) | parameters)


@pytest.mark.slow
def test_where_it_looks_notebook_runs_top_to_bottom(trained_demo):
    # 06 explains the demo model; the session's one-epoch demo run serves (a reader's is `make demo`'s, 3 epochs).
    # Its checks hold on both: occlusion points right well above the occupied-cell guess and the untrained bridge.
    name = "06_where_it_looks"
    assert name in TRAINING
    run_notebook(name, PARAMETERS.get(name, {}) | {"CHECKPOINT": trained_demo[2]})
