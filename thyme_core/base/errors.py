"""Errors a user can act on (an unreadable input file, a missing column, a bad option).

They carry a message that names the file / column / value at fault; the CLI prints them without a
traceback and exits non-zero. Per-record problems are not exceptions: they become reason codes
(reasons.py) and land in SQL.
"""


class ThymeError(Exception):
    """A problem with the user's input or configuration, explained in the message."""


class BadParameter(ThymeError, ValueError):
    """A parameter outside its range (shard_rows 0, a negative temperature): a ThymeError to the CLI and the
    UI's logs, and still a ValueError to code that validates configs."""
