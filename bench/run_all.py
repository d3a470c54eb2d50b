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
from pathlib import Path

from bench import common as shared
from bench import decoder, generation, gpu, train_step


def build_parser() -> argparse.ArgumentParser:
    parser = shared.make_parser(__doc__)
    parser.add_argument("--threads", type=int, default=None, help="passed to every script (default: theirs, 1)")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help=f"passed to every script (default: {shared.DEFAULT_WORK_DIR})"
    )
    parser.add_argument("--no-write", action="store_true", help="print the tables only; leave BENCHMARKS.md alone")
    return parser


@shared.one_line_errors
def main(argv: list[str] | None = None) -> int:
    args = shared.parse_args(build_parser(), argv, {"threads": 1})  # checked once, before the first script
    common = []
    if args.threads:
        common += ["--threads", str(args.threads)]
    if args.work_dir:
        common += ["--work-dir", str(args.work_dir)]
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
