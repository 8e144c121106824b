"""The loop's write ordering, with no database and no broker: ``PendingWrites`` (decided batches
in line) and ``InOrder`` (a handler's batches decided, then written in the order of the
decisions, and settled on every path)."""

from __future__ import annotations

import asyncio

import pytest

from services.common.consumer_loop import Decided, InOrder, PendingWrites


class Away(Exception):
    """The database is away: the runner calls the write again."""


async def turn_waits(pending: PendingWrites[str], place: object) -> asyncio.Future[None]:
    turn = asyncio.ensure_future(pending.wait_turn(place))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    return turn


async def test_a_batch_waits_for_every_batch_queued_before_it() -> None:
    pending: PendingWrites[str] = PendingWrites()
    first, second, third = (pending.enqueue(k) for k in "abc")
    await asyncio.wait_for(pending.wait_turn(first), 1)  # nothing before the first
    turn = await turn_waits(pending, third)
    assert pending.settle(second)  # given up before the first is written
    await asyncio.sleep(0.01)
    assert not turn.done()  # the first is still ahead
    assert pending.settle(first)
    await asyncio.wait_for(turn, 1)
    assert pending.ahead() == ["c"]


async def test_settling_twice_is_harmless_and_the_snapshot_does_not_change() -> None:
    pending: PendingWrites[str] = PendingWrites()
    first = pending.enqueue("a")
    ahead = pending.ahead()
    assert pending.settle(first) and not pending.settle(first)
    assert ahead == ["a"] and pending.ahead() == [] and len(pending) == 0


async def test_settle_all_gives_up_what_is_queued_and_lets_a_later_batch_write() -> None:
    pending: PendingWrites[str] = PendingWrites()
    first, second = pending.enqueue("a"), pending.enqueue("b")
    pending.settle(first)
    assert pending.settle_all() == ["b"] and len(pending) == 0 and second.settled.done()
    await asyncio.wait_for(pending.wait_turn(pending.enqueue("c")), 1)


class Batches:
    """Fake decisions: a batch carries its own name; its write waits for its 'hashes' (an event
    the test sets, in any order) and may fail as scripted."""

    def __init__(self) -> None:
        self.seen: dict[str, list[str]] = {}  # what each decision was given as ahead
        self.hashed: dict[str, asyncio.Event] = {}
        self.failures: dict[str, list[Exception]] = {}
        self.written: list[str] = []
        self.abandoned: list[str] = []

    async def decide(self, items: list[str], ahead: list[str]) -> Decided[str]:
        name = "+".join(items)
        self.seen[name] = list(ahead)
        self.hashed[name] = asyncio.Event()

        async def write() -> None:
            await self.hashed[name].wait()
            if self.failures.get(name):
                raise self.failures[name].pop(0)
            self.written.append(name)

        return Decided(carries=name, write=write, abandon=lambda: self.abandoned.append(name))


def in_order(batches: Batches) -> InOrder[str, str]:
    return InOrder(batches.decide, transient=lambda exc: isinstance(exc, Away))


async def test_writes_keep_the_order_of_the_decisions_whatever_order_hashes_finish_in() -> None:
    batches = Batches()
    handler = in_order(batches)
    writes = [asyncio.ensure_future((await handler([k]))()) for k in "abc"]
    for name in "cba":  # the last decided is hashed first
        batches.hashed[name].set()
        await asyncio.sleep(0.01)
        assert batches.written == ([] if name != "a" else ["a", "b", "c"])
    await asyncio.wait_for(asyncio.gather(*writes), 1)
    assert batches.written == ["a", "b", "c"] and len(handler.pending) == 0
    assert batches.abandoned == []


async def test_later_decisions_see_unwritten_batches_until_they_are_written() -> None:
    batches = Batches()
    handler = in_order(batches)
    write_a = await handler(["a"])
    await handler(["b"])
    assert batches.seen == {"a": [], "b": ["a"]}
    batches.hashed["a"].set()
    await write_a()
    await handler(["c"])
    assert batches.seen["c"] == ["b"]  # a is written: no longer counted


async def test_a_transient_failure_keeps_the_place_and_another_gives_the_batch_up() -> None:
    batches = Batches()
    handler = in_order(batches)
    batches.failures = {"a": [Away()], "b": [ValueError("poison")]}
    write_a, write_b = await handler(["a"]), await handler(["b"])
    for name in "ab":
        batches.hashed[name].set()
    with pytest.raises(Away):
        await write_a()
    assert handler.ahead() == ["a", "b"] and batches.abandoned == []  # still in line
    later = asyncio.ensure_future(write_b())
    await asyncio.sleep(0.01)
    assert not later.done()  # still behind a
    await write_a()  # the runner's retry
    with pytest.raises(ValueError):
        await later
    assert handler.ahead() == [] and batches.abandoned == ["b"]  # given up: settled
    write_c = await handler(["c"])  # as the runner redoes b's records one by one
    batches.hashed["c"].set()
    await asyncio.wait_for(write_c(), 1)
    assert batches.written == ["a", "c"] and batches.seen["c"] == []


async def test_a_write_cancelled_while_waiting_does_not_hold_up_later_batches() -> None:
    batches = Batches()
    handler = in_order(batches)
    write_a, write_b, write_c = [await handler([k]) for k in "abc"]
    waiting_b = asyncio.ensure_future(write_b())
    waiting_c = asyncio.ensure_future(write_c())
    await asyncio.sleep(0.01)
    waiting_b.cancel()  # the worker stops b's write
    with pytest.raises(asyncio.CancelledError):
        await waiting_b
    assert batches.abandoned == ["b"] and handler.ahead() == ["a", "c"]
    batches.hashed["c"].set()
    await asyncio.sleep(0.01)
    assert not waiting_c.done()  # a is still ahead of c
    batches.hashed["a"].set()
    await write_a()
    await asyncio.wait_for(waiting_c, 1)
    assert batches.written == ["a", "c"] and len(handler.pending) == 0


async def test_stop_settles_batches_whose_write_never_started() -> None:
    batches = Batches()
    handler = in_order(batches)
    await handler(["a"])  # decided; its write is never called (cancelled before it started)
    await handler(["b"])
    handler.stop()
    assert batches.abandoned == ["a", "b"] and len(handler.pending) == 0
    write_c = await handler(["c"])
    assert batches.seen["c"] == []
    batches.hashed["c"].set()
    await asyncio.wait_for(write_c(), 1)
    assert batches.written == ["c"]
