"""Run every benchmark with its defaults, one after the other, and rewrite all of BENCHMARKS.md's sections.

    python -m bench.run_all                 # ~30-60 minutes on 2 shared CPU cores at the Qwen3-0.6B size
    python -m bench.run_all --threads 2     # extra arguments go to every script (the common ones only)

The common arguments are --threads, --work-dir and --no-write; each script's own settings stay at their defaults
(run a script alone to change them).

Read next: `BENCHMARKS.md` (what it rewrites), `bench/common.py` (how every script times).
"""

from __future__ import annotations

import argparse
import time

from bench import decoder, generation, gpu, train_step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default=None)
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    common = []
    if args.threads:
        common += ["--threads", args.threads]
    if args.work_dir:
        common += ["--work-dir", args.work_dir]
    if args.no_write:
        common += ["--no-write"]
    for script in (decoder, generation, train_step, gpu):
        start = time.perf_counter()
        print(f"\n=== {script.__name__} {' '.join(common)}", flush=True)
        script.main(list(common))
        print(f"=== {script.__name__}: {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
