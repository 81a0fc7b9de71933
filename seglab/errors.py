"""The mistakes a user can fix, as exception types the command line reports in one or two lines.

Library code raises these with a message that names the option or file and says what to do. The
``seglab`` command prints that message instead of a traceback and exits with the type's status:
2 for a usage or configuration mistake, 1 for bad data or a run-time problem. Anything else is a bug
and keeps its traceback. The types also subclass the builtin a caller would expect (``ValueError``,
``FloatingPointError``), so ``except ValueError`` in users' code keeps working.
"""

from __future__ import annotations


class SeglabError(Exception):
    """A problem the user can fix; the message names the option or file and what to do."""

    exit_code = 1


class ConfigError(SeglabError, ValueError):
    """A configuration or command-line value that cannot work (a negative learning rate ...)."""

    exit_code = 2


class DataError(SeglabError, ValueError):
    """Samples or a split that cannot be used: missing, unreadable or inconsistent files. Each of
    ``problems`` names one file (or split) and what is wrong with it; the message shows the first
    few, then ``hint`` (what to do about all of them). ``seglab check-data`` lists every one."""

    shown = 5

    def __init__(self, *problems: str, hint: str = "") -> None:
        self.problems = list(problems)
        self.hint = hint
        lines = self.problems[: self.shown]
        if len(self.problems) > self.shown:
            more = len(self.problems) - self.shown
            lines.append(f"... and {more} more (seglab check-data lists them all)")
        super().__init__("\n".join([*lines, *([hint] if hint else [])]))


class CheckpointError(SeglabError, ValueError):
    """A checkpoint that cannot be read, is not a seglab checkpoint or does not fit the run."""


class WeightsUnavailableError(SeglabError, RuntimeError):
    """Pretrained weights that are neither cached nor downloadable from here."""


class NonFiniteLossError(SeglabError, FloatingPointError):
    """The training loss became NaN or infinite."""
