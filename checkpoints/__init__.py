"""Checkpoints: what a run saves, how it is found again, and how it is rebuilt and shared.

* `store`: save and read checkpoints (weights, sidecar, training state) in a folder per run, prune, and find the
  run a command means (`find_run`); `hf:OWNER/NAME` checkpoints from the hub.
* `restore`: `load_trained(path)`, the trained model a checkpoint describes, rebuilt from it alone.
* `share`: `train.py --push-to-hub`, a checkpoint and its model card (`model_card`) as a hub model repo.

Read next: `checkpoints/store.py`.
"""
