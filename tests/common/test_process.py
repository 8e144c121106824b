"""``tune_gc_for_workers``: what a worker process does once it has started; ``widen_pipes``: the
pipes of a process pool."""

from __future__ import annotations

import fcntl
import gc
import logging
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from services.common.process import PIPE_BYTES, YOUNG_THRESHOLD, tune_gc_for_workers, widen_pipes


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


def _pipe_sizes(pool: ProcessPoolExecutor) -> list[int]:
    return [fcntl.fcntl(q._reader.fileno(), fcntl.F_GETPIPE_SZ)
            for q in (pool._call_queue, pool._result_queue)]


def _answer(size: int) -> tuple[int, bytes]:
    return os.getpid(), b"x" * size


def test_a_pools_call_and_result_pipes_are_widened_and_still_carry_its_calls() -> None:
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        default = 16 * os.sysconf("SC_PAGE_SIZE")  # Linux's: 64 KiB with 4 KiB pages
        assert _pipe_sizes(pool) == [default, default] and default < PIPE_BYTES
        assert widen_pipes(pool) == PIPE_BYTES
        assert _pipe_sizes(pool) == [PIPE_BYTES, PIPE_BYTES]
        # answers smaller and larger than the pipe, in the order asked
        sizes = [10, 500_000, 3 * PIPE_BYTES, 1]
        answers = [f.result(timeout=60) for f in [pool.submit(_answer, n) for n in sizes]]
        assert [len(body) for _, body in answers] == sizes
        assert len({pid for pid, _ in answers}) == 1 and answers[0][0] != os.getpid()
    finally:
        pool.shutdown()


def test_a_pool_without_those_pipes_is_left_as_it_is(caplog: pytest.LogCaptureFixture) -> None:
    with ThreadPoolExecutor(max_workers=1) as threads, caplog.at_level(logging.INFO):
        assert widen_pipes(threads) is None  # type: ignore[arg-type]
    assert "left at their default size (AttributeError)" in caplog.text
