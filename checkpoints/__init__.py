"""Checkpoints: what a run saves, how it is found again, and how it is rebuilt and shared.

* `store`: save and read checkpoints (weights, sidecar, training state) in a folder per run, prune, and find the
  run a command means (`find_run`); `hf:OWNER/NAME` checkpoints from the hub.
* `resolve`: `named_checkpoint(spec)`, which checkpoint a command line names: a file or its sidecar, a run folder, an
  output folder, `hf:OWNER/NAME` or `latest`, the same forms and one-line errors in every command.
* `restore`: `load_trained(path)`, the trained model a checkpoint describes, rebuilt from it alone.
* `share`: `train.py --push-to-hub`, a checkpoint and its model card (`model_card`) as a hub model repo.

Read next: `checkpoints/store.py`.
"""
