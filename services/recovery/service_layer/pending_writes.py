"""``PendingWrites``: code-request batches that are decided but not written yet, oldest first.

A batch is decided while earlier ones still wait for their hashes, so until an earlier batch is
written a later one must count what it decided: its request ids (not decided twice) and its
rate events (limits see them). Writes keep the order of the decisions: a batch is written only
once the batch queued before it is written or given up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from services.recovery.service_layer.ports import RateEvent


@dataclass(eq=False, kw_only=True)
class PendingBatch:
    """What one decided batch will write."""

    event_ids: set[str]
    rate_events: list[RateEvent]
    after: asyncio.Future[None] | None  # the batch queued before this one is settled
    settled: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class PendingWrites:
    def __init__(self) -> None:
        self._queue: list[PendingBatch] = []

    def ahead(self) -> list[PendingBatch]:
        """The batches queued now (a batch being decided counts these)."""
        return list(self._queue)

    def enqueue(self, event_ids: Collection[str], rate_events: Sequence[RateEvent]) -> PendingBatch:
        batch = PendingBatch(event_ids=set(event_ids), rate_events=list(rate_events),
                             after=self._queue[-1].settled if self._queue else None)
        self._queue.append(batch)
        return batch

    async def wait_turn(self, batch: PendingBatch) -> None:
        """Returns once every batch queued before ``batch`` is written or given up."""
        if batch.after is not None:
            await asyncio.wait([batch.after])

    def settle(self, batch: PendingBatch) -> None:
        """``batch`` is written, or given up (its records are redone one by one): later
        batches stop counting it and may write."""
        if batch in self._queue:
            self._queue.remove(batch)
        if not batch.settled.done():
            batch.settled.set_result(None)

    def __len__(self) -> int:
        return len(self._queue)


def in_flight(ahead: Sequence[PendingBatch]) -> set[str]:
    """Request ids decided by ``ahead``."""
    return {e for batch in ahead for e in batch.event_ids}


def unwritten_rate_events(ahead: Sequence[PendingBatch],
                          written: Callable[[Collection[str]], set[str]]) -> list[RateEvent]:
    """Rate events of ``ahead`` that are not stored yet. ``written`` tells which request ids are
    stored; it is asked in the same transaction as the rate history is read, so a batch written
    meanwhile is counted once, from the table (one id per batch tells)."""
    live = {min(b.event_ids): b for b in ahead if b.rate_events and b.event_ids}
    stored = written(list(live)) if live else set()
    return [e for key, b in live.items() if key not in stored for e in b.rate_events]
