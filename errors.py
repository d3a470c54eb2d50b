"""One exception type for the mistakes a user can make, and the argument parser every command line uses.

Bad input (an unknown encoder name, a malformed `config.json`, a missing file, an unreachable hub with no
local copy) is not a bug, so it should not end in a traceback. Library code raises `UserError` with a
one-line message that says what is wrong and what is accepted; the command-line entry points
(`train.py`, `caption.py`, ...) catch it, print the line, and exit with status 2.

`OneLineArgumentParser` is argparse with the same contract for mistakes on the command line itself (an unknown
flag, a value of the wrong type): one line on stderr, exit status 2, no usage dump. Its `--help` shows every
option's default (`DefaultsHelpFormatter`).

Read next: `train.py`, an entry point that turns a `UserError` into its one line and exit status 2.
"""

import argparse
import sys


class UserError(Exception):
    """An expected mistake in the user's input or environment, reported as one line."""


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's formatter that appends "(default: X)" to an option's help, except where the help already says
    its default in words, or there is nothing to say: a switch (`--serve`: off unless given) or a default of None,
    whose meaning the help itself states ("default: every image")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit status 2 (no usage dump), and `--help` shows
    every default."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)
