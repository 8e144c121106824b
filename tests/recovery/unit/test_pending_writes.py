"""``PendingWrites``: decided batches are counted by later ones and written in order."""

from __future__ import annotations

import asyncio

from services.recovery.domain.limits import LimitKind
from services.recovery.service_layer.pending_writes import (
    PendingWrites,
    in_flight,
    unwritten_rate_events,
)

EVENT = (LimitKind.LOGIN, "subject", 1000.0)


async def test_a_batch_waits_for_the_one_queued_before_it() -> None:
    pending = PendingWrites()
    first = pending.enqueue({"a"}, [EVENT])
    second = pending.enqueue({"b"}, [])
    await asyncio.wait_for(pending.wait_turn(first), 1)  # nothing before the first
    turn = asyncio.ensure_future(pending.wait_turn(second))
    await asyncio.sleep(0.01)
    assert not turn.done()
    pending.settle(first)
    await asyncio.wait_for(turn, 1)
    assert pending.ahead() == [second]


async def test_a_batch_given_up_lets_the_next_write_and_settling_twice_is_harmless() -> None:
    pending = PendingWrites()
    first, second, third = (pending.enqueue({k}, []) for k in "abc")
    turn = asyncio.ensure_future(pending.wait_turn(third))
    await asyncio.sleep(0.01)
    assert not turn.done()
    pending.settle(second)  # given up (its records are redone one by one)
    pending.settle(second)
    await asyncio.wait_for(turn, 1)
    assert pending.ahead() == [first, third]  # the first is still counted until it is written


async def test_later_batches_count_the_ids_and_rate_events_not_written_yet() -> None:
    pending = PendingWrites()
    pending.enqueue({"a", "b"}, [EVENT])
    pending.enqueue({"c"}, [])  # no rate events: nothing to count
    ahead = pending.ahead()
    assert in_flight(ahead) == {"a", "b", "c"}
    asked: list[list[str]] = []

    def none_written(ids: object) -> set[str]:
        asked.append(sorted(ids))  # type: ignore[call-overload]
        return set()

    assert unwritten_rate_events(ahead, none_written) == [EVENT]
    assert asked == [["a"]]  # one id per batch tells whether it is written
    assert unwritten_rate_events(ahead, lambda ids: {"a"}) == []  # written meanwhile: once
    assert unwritten_rate_events([], none_written) == [] and len(asked) == 1


async def test_the_snapshot_does_not_change_as_batches_settle() -> None:
    pending = PendingWrites()
    first = pending.enqueue({"a"}, [EVENT])
    ahead = pending.ahead()
    pending.settle(first)
    assert ahead == [first] and pending.ahead() == [] and len(pending) == 0
