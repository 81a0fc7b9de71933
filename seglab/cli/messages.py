"""Messages to the user from the ``seglab`` command, written in one place."""

from __future__ import annotations

import sys

from lightning.pytorch.utilities import rank_zero_only


@rank_zero_only
def notice(message: str) -> None:
    """A one-line message to the user on stderr, from one process only (rank zero)."""
    print(message, file=sys.stderr, flush=True)
