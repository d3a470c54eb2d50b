"""Where the code meets the machine: files, devices, processes and the environment.

Nothing here knows about models. Read these when a run has to survive something outside itself:

* `files`: `write_atomically` (a file is complete or absent, never half-written), the one way this project writes
  checkpoints, caches and metrics.
* `devices`: `resolve_device` picks the device and the autocast (bf16 on CUDA, fp32 on the CPU) for training and
  for caption.py alike.
* `distributed`: `Distributed`, this process's place among torchrun's processes, passed to whatever needs it.
* `env`: `dotenv_values`, the one reader of the `.env` file.
* `signals`: `StopSignals`, SIGTERM/SIGUSR1/Ctrl-C turned into "stop after this step" (preemption).

Read next: `training/` (the loop that uses them), or `captioning/captioner.py` (inference).
"""
