"""One exception type for the mistakes a user can make.

Bad input (an unknown encoder name, a malformed `config.json`, a missing file, an unreachable hub with no
local copy) is not a bug, so it should not end in a traceback. Library code raises `UserError` with a
one-line message that says what is wrong and what is accepted; the command-line entry points
(`train.py`, `caption.py`, ...) catch it, print the line, and exit with status 2.
"""


class UserError(Exception):
    """An expected mistake in the user's input or environment, reported as one line."""
