"""The alignment experiments: does a small bridge teach a frozen, text-pretrained language model to see?

`python -m experiments GRID...` trains a grid of configurations through `training.run` (the training code as a
library), several seeds each, and writes one JSON record per (cell, seed), a table of mean ± sd over seeds, and
figures. The grids (experiments/grids.py):

- transfer: the demo's text-pretrained LM frozen (K = 0), or with its top K blocks trained, against the same
  architecture with random weights, at the same K and number of steps;
- views: pooled embedding vs hidden states, and 1 / 4 / 9-16 visual tokens;
- two-stage: the bridge alone first, then the top K blocks too (LLaVA), against top K from the start;
- smoke: two short cells, for CI.

The results measured on the shapes set are in EXPERIMENTS.md, and the records behind them in experiments/results/.

Read next: `experiments/grids.py` (the configurations compared), `experiments/runner.py` (how they run).
"""
