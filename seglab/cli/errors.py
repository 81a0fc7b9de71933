"""User mistakes as one or two lines on stderr and an exit status, not a traceback.

A ``SeglabError`` can reach the command wrapped: jsonargparse raises its own ``ValueError`` with
the class's exception as the cause when a data module or model refuses its arguments, and a
``DataLoader`` worker's exception is raised again in the main process with the worker's traceback
in its message. Both are unwrapped here. Anything that is not a ``SeglabError`` is a bug and keeps
its traceback; ``SEGLAB_DEBUG=1`` keeps it for user errors too.
"""

from __future__ import annotations

from seglab.errors import SeglabError

_WORKER_TRACEBACK = "Original Traceback (most recent call last):"


def user_error(error: BaseException) -> SeglabError | None:
    """The ``SeglabError`` behind ``error`` (itself, or a cause or context of it), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, SeglabError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def message_of(error: SeglabError) -> str:
    """The error's own message, without the traceback of a DataLoader worker that raised it."""
    text = str(error)
    if _WORKER_TRACEBACK not in text:
        return text
    marker = f"{type(error).__module__}.{type(error).__qualname__}: "
    start = text.rfind(marker)
    if start < 0:
        marker = f"{type(error).__qualname__}: "
        start = text.rfind(marker)
    return text[start + len(marker) :].strip() if start >= 0 else text.splitlines()[-1]
