"""One exception type for the mistakes a user can make.

Bad input (an unknown encoder name, a malformed `config.json`, a missing file, an unreachable hub with no
local copy) is not a bug, so it should not end in a traceback. Library code raises `UserError` with a
one-line message that says what is wrong and what is accepted; the command-line entry points
(`train.py`, `caption.py`, ...) catch it, print the line, and exit with status 2.

Read next: `train.py`, an entry point that turns a `UserError` into its one line and exit status 2.
"""

import argparse
import sys


class UserError(Exception):
    """An expected mistake in the user's input or environment, reported as one line."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit status 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)
