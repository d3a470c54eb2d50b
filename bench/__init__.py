"""Benchmarks of our decoder and training step against transformers' Qwen3 (scripts, not tests).

Each script times one thing, prints a table and rewrites its own section of BENCHMARKS.md (the machine, the settings,
the command behind every row). Run them from the repository root:

    python -m bench.decoder       # forward and forward+backward at the Qwen3-0.6B size
    python -m bench.generation    # greedy decoding, batch 1 and 8, tokens/s
    python -m bench.train_step    # one vision-language training step: time and peak memory
    python -m bench.gpu           # CUDA only: tokens/s, MFU, largest batch in 24 GB, epoch time, generation
    python -m bench.run_all       # all of the above, one after the other

The weights are random (the timing of a matmul does not depend on its values) but identical for both models: ours
are saved once in the hub's layout and both models load that directory.

Read next: `bench/common.py` (how every benchmark times, and its two models with the same weights).
"""
