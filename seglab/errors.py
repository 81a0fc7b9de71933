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
    """A sample or split that cannot be used: a missing, unreadable or inconsistent file."""


class CheckpointError(SeglabError, ValueError):
    """A checkpoint that cannot be read, is not a seglab checkpoint or does not fit the run."""


class WeightsUnavailableError(SeglabError, RuntimeError):
    """Pretrained weights that are neither cached nor downloadable from here."""


class NonFiniteLossError(SeglabError, FloatingPointError):
    """The training loss became NaN or infinite."""
