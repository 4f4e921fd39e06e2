"""The pass's garbage-collection thresholds (connector/engine/collect.py): widened while
passes run, restored when the last one ends, left alone when already wider."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from connector.engine.collect import PASS_GEN0, fewer_collections


@pytest.fixture(autouse=True)
def _thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_widened_during_a_pass_and_restored_after() -> None:
    gc.set_threshold(700, 10, 10)
    with fewer_collections():
        assert gc.get_threshold() == (PASS_GEN0, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_restored_even_when_the_pass_raises() -> None:
    gc.set_threshold(700, 10, 10)
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("boom")
    assert gc.get_threshold() == (700, 10, 10)


def test_passes_at_once_share_one_widening() -> None:
    gc.set_threshold(700, 10, 10)
    first_in, second_out = threading.Event(), threading.Event()
    seen: list[tuple[int, int, int]] = []

    def first() -> None:
        with fewer_collections():
            first_in.set()
            second_out.wait(5)
            seen.append(gc.get_threshold())  # the second ended; this one still runs

    t = threading.Thread(target=first)
    t.start()
    first_in.wait(5)
    with fewer_collections():
        assert gc.get_threshold() == (PASS_GEN0, 10, 10)
    second_out.set()
    t.join(5)
    assert seen == [(PASS_GEN0, 10, 10)]
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.parametrize("already", [(0, 10, 10), (50_000, 10, 10)])
def test_a_process_that_collects_more_rarely_is_left_alone(
    already: tuple[int, int, int],
) -> None:
    gc.set_threshold(*already)
    with fewer_collections():
        assert gc.get_threshold() == already
    assert gc.get_threshold() == already
