"""Training: `training.run.run(config) -> RunResult`, the one entry point of `train.py` and `python -m experiments`.

Read in this order:

* `step.py`: one training step, in one screen: forward, loss, backward, clip, step;
* `loop.py`: the bookkeeping around the step (micro-batches and their token weights, skipping a non-finite step,
  logging, progress, checkpoint cadence), one epoch at a time;
* `run.py`: a run top to bottom: data, model, features, optimizer, resume, the loop, evaluation, checkpoints, and
  what a run stopped by a signal (preemption, Ctrl-C) saves before it exits;
* `config.py`: `TrainConfig`, every setting, from flags, the environment or `.env`, validated once;
* `optim.py`: AdamW in two groups (its warm-up + cosine schedule is `lr_schedule.py`, which the demo's LM uses too);
* `decoders.py`: where the decoder comes from (the hub, a directory, the demo's, random-init);
* `preflight.py`: the checks that take seconds, before the work that takes hours; which run or checkpoint a
  command means;
* `space.py`: before the features are built, a warning line when the disks lack room for what the run will write;
* `tracking.py`: W&B, metrics.jsonl and the console.

The demo's text-pretrained language model (`--decoder demo-pretrained`) is `demo/pretrain.py`.

Evaluation is `evaluation/`, checkpoints are `checkpoints/`, the machine (devices, processes, files, signals) is
`runtime/`.

Read next: `training/step.py`.
"""
