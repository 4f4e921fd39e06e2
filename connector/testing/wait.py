"""Waiting for another thread or process to get somewhere, for the tests that run the
service, the CLI or a sandbox beside them: a synchronisation aid with a generous
deadline, never a timing assertion (nothing asserts how long anything took)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 60.0) -> T:
    """Poll until ``predicate()`` is truthy and return its value; fail the test when
    the deadline passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")
