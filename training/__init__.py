"""Training utilities: the pieces `train.py` composes (experiment tracking, and more as they are added).

* `tracking`: `Tracker`, logging to Weights & Biases (online, offline or disabled) and to a local
  `metrics.jsonl` that needs no account.
"""
