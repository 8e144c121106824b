"""``tune_gc_for_workers``: what a worker process does once it has started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.common.process import YOUNG_THRESHOLD, tune_gc_for_workers


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
@pytest.mark.parametrize(("given", "young"), [({}, YOUNG_THRESHOLD), ({"young_threshold": 10_000}, 10_000)])
def test_the_start_up_heap_is_frozen_and_young_objects_collected_less_often(
    given: dict[str, int], young: int
) -> None:
    before = gc.get_threshold()
    kept = [object() for _ in range(10)]  # alive at start-up, like a worker's app and engine
    tune_gc_for_workers(**given)
    assert gc.get_freeze_count() > len(kept)
    assert gc.get_threshold() == (young, *before[1:])
    assert young > before[0]


@pytest.mark.usefixtures("restored_gc")
def test_garbage_cycles_made_later_are_still_collected_without_being_asked() -> None:
    tune_gc_for_workers()
    collected = 0

    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

        def __del__(self) -> None:
            nonlocal collected
            collected += 1

    for _ in range(2 * YOUNG_THRESHOLD):  # garbage cycles, more than the young threshold
        a, b = Node(), Node()
        a.other, b.other = b, a
    del a, b
    assert collected > 0  # the collector ran by itself: no gc.collect() here
