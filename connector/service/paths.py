"""Ids in URL paths, checked before they reach the database.

A path segment is whatever a client sends: ``-1``, ``1e3``, ``٤٢`` (which ``int()``
accepts) or 23 digits, which SQLite cannot even compare with (it raised
``OverflowError``: a 500). Only ASCII digits naming a storable row id are ids.
"""

from __future__ import annotations

import re

from connector.state.store import valid_id

_DIGITS = re.compile(r"[0-9]{1,19}")


def path_id(text: str) -> int | None:
    """The row id a path segment names, or None when it cannot name one."""
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if valid_id(value) else None
