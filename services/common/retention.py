"""Retention of bookkeeping rows: deleted in small batches, off the hot path.

Each service lists its ``Prunable`` tables (which rows are old, given "now" and the retention)
and runs a ``Pruner`` from a periodic task. A batch is one short transaction deleting at most
``batch`` rows by primary key (of one column or several), so a large backlog never holds locks
for long nor delays the consumers' transactions much; ``<service>_rows_pruned_total``
``{table}`` counts the rows.

A table whose rows were published on a compacted topic (the notifier's deliveries: their
statuses, by code id) names that topic and what its records are keyed by: each batch stages a
tombstone for every row it deletes in the same transaction, so what the topic still holds of them
goes with them. An erasure finds the records to retract through those rows; without the
tombstones, a row pruned before the erasure (``RETENTION_DAYS`` below the topic's retention) would
leave its records behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from sqlalchemy import ColumnElement, Table, select, tuple_
from sqlalchemy.orm import Session

from schemas.topics import DAY_MS
from services.common.codec import tombstone
from services.common.db import Database, HandOver, Staged, stage_outbox

log = logging.getLogger(__name__)

DAY_S = DAY_MS / 1000


@dataclass(frozen=True)
class Prunable:
    """Rows of ``table`` that ``old(now, retention_s)`` selects may be deleted (``now`` in Unix
    seconds)."""

    table: Table
    old: Callable[[float, float], ColumnElement[bool]]
    # the compacted topic this table's rows were published on, and the outbox to stage its
    # tombstones in
    tombstones: tuple[str, Table] | None = None
    # what each row's records on that topic are keyed by; None: the table's one-column primary key
    published_key: ColumnElement[Any] | None = None


def window_prunables(windows: Table, window_slots: Table) -> list[Prunable]:
    """The two tables of a service's sliding windows (``services.common.db.window_tables``): the
    rings and slots whose events left their window more than the retention ago. Each take prunes
    what left its own subject's window; these are what no take reached."""
    return [Prunable(windows, lambda now, keep: windows.c.busy_until < now - keep),
            Prunable(window_slots, lambda now, keep: window_slots.c.until < now - keep)]


def prune_batch(session: Session, item: Prunable, now: float, retention_s: float,
                batch: int) -> tuple[int, list[Staged]]:
    """Delete at most ``batch`` old rows of one table; returns how many, and the tombstones staged
    for them (see the module's docstring)."""
    keys = list(item.table.primary_key.columns)
    ids = [tuple(row) for row in session.execute(
        select(*keys).where(item.old(now, retention_s)).limit(batch))]
    if not ids:
        return 0, []
    key = keys[0] if len(keys) == 1 else tuple_(*keys)
    # old still: a row written again since the select (a lock-out count reaching its lock, a
    # reused window slot) stays; PostgreSQL checks the condition on the row's newest version
    published = item.published_key if item.published_key is not None else keys[0]
    deleted = list(session.execute(item.table.delete().where(
        key.in_([i[0] for i in ids] if len(keys) == 1 else ids), item.old(now, retention_s),
    ).returning(published)).scalars())
    staged: list[Staged] = []
    if deleted and item.tombstones is not None:
        topic, outbox = item.tombstones
        staged = stage_outbox(session, outbox, topic,
                              [tombstone(str(k)) for k in dict.fromkeys(deleted)])
    return len(deleted), staged


class Pruner:
    def __init__(
        self,
        *,
        db: Database,
        tables: Sequence[Prunable],
        retention_days: float,
        pruned: Counter,
        batch: int = 500,
        pause_s: float = 0.05,
        hand_over: HandOver | None = None,
        flush: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """``hand_over`` and ``flush`` (the outbox relay's) publish the tombstones of tables that
        name a topic once each pass is done; without them the relay's sweep finds them."""
        self.db = db
        self.hand_over = hand_over
        self.flush = flush
        self.tables = tables
        self.retention_s = retention_days * DAY_S
        self.pruned = pruned
        self.batch = batch
        self.pause_s = pause_s

    async def prune(self, now: float) -> int:
        """Everything old as of ``now``, batch after batch (a pause between them leaves the
        database thread to the consumers); returns the rows deleted.

        The tombstones staged are flushed at the end of the pass, and also when a later batch
        fails: they are committed and in the relay's memory, where its sweep never looks, and the
        next pass may stage nothing to flush. The batch's error is raised all the same (a failed
        flush then only logged: the relay reads the table at its next flush or sweep). A pass
        cancelled at a stop does not wait for the broker: the table read at the next start, or
        another worker's sweep, publishes them."""
        total = 0
        staged = False
        try:
            for item in self.tables:
                while True:
                    n, tombstones = await self.db.run(
                        lambda s, item=item: prune_batch(s, item, now, self.retention_s, self.batch),  # type: ignore[misc]
                        after_commit=self._hand_over)
                    staged = staged or bool(tombstones)
                    if n:
                        self.pruned.labels(item.table.name).inc(n)
                        total += n
                    if n < self.batch:
                        break
                    await asyncio.sleep(self.pause_s)
        except Exception:
            if staged and self.flush is not None:
                try:
                    await self.flush()
                except Exception as exc:
                    log.warning("tombstones of a failed prune pass wait for the outbox's next read (%s)",
                                type(exc).__name__)
            raise
        if staged and self.flush is not None:
            await self.flush()
        return total

    def _hand_over(self, done: tuple[int, list[Staged]]) -> None:
        if done[1] and self.hand_over is not None:
            self.hand_over(done[1])

    async def run_forever(self, clock: Callable[[], float], every_s: float) -> None:
        """The periodic task: prune, wait ``every_s``, again; a failure is logged and retried."""
        while True:
            try:
                pruned = await self.prune(clock())
                if pruned:
                    log.info("bookkeeping rows pruned", extra={"rows": pruned})
            except Exception as exc:  # the database may be away: next round
                log.warning("pruning failed (%s); retrying later", type(exc).__name__)
            await asyncio.sleep(every_s)


def pruned_counter(metrics: Any) -> Counter:
    """The rows-pruned counter of a service's ``ServiceMetrics``."""
    counter: Counter = metrics.counter(
        "rows_pruned_total", "Bookkeeping rows deleted after RETENTION_DAYS, by table.", ["table"])
    return counter
