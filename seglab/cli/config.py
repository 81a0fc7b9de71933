"""Reading a parsed experiment configuration: which classes its ``class_path`` entries name."""

from __future__ import annotations

import importlib
from typing import Any

from jsonargparse import Namespace


def class_from_path(class_path: str) -> type | None:
    """The class a dotted path names, or None (the parser has validated paths already)."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None
    return cls if isinstance(cls, type) else None


def entries_of(value: Any, base: type | tuple[type, ...]) -> list[tuple[Any, Namespace | None]]:
    """The entries of a parsed value (one ``class_path``/``init_args`` namespace, an instance, a
    list of them, or None/bool) whose class is ``base`` or a subclass: ``(entry, init_args)``, with
    ``init_args`` None for instances."""
    items = value if isinstance(value, list | tuple) else [value]
    found = []
    for item in items:
        if isinstance(item, base):
            found.append((item, None))
        elif isinstance(item, Namespace) and isinstance(item.get("class_path"), str):
            cls = class_from_path(item.class_path)
            if cls is not None and issubclass(cls, base):
                init_args = item.get("init_args")
                if init_args is None:
                    item["init_args"] = init_args = Namespace()
                found.append((item, init_args))
    return found
