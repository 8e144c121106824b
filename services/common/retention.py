"""Retention of bookkeeping rows: deleted in small batches, off the hot path.

Each service lists its ``Prunable`` tables (which rows are old, given "now" and the retention)
and runs a ``Pruner`` from a periodic task. A batch is one short transaction deleting at most
``batch`` rows by primary key, so a large backlog never holds locks for long nor delays the
consumers' transactions much; ``selfcare_<service>_rows_pruned_total{table}`` counts the rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from sqlalchemy import ColumnElement, Table, select
from sqlalchemy.orm import Session

from services.common.db import Database

log = logging.getLogger(__name__)

DAY_S = 86400.0


@dataclass(frozen=True)
class Prunable:
    """Rows of ``table`` that ``old(now, retention_s)`` selects may be deleted (``now`` in Unix
    seconds)."""

    table: Table
    old: Callable[[float, float], ColumnElement[bool]]


def prune_batch(session: Session, item: Prunable, now: float, retention_s: float, batch: int) -> int:
    """Delete at most ``batch`` old rows of one table; returns how many."""
    (key,) = item.table.primary_key.columns
    ids = list(session.scalars(select(key).where(item.old(now, retention_s)).limit(batch)))
    if ids:
        session.execute(item.table.delete().where(key.in_(ids)))
    return len(ids)


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
    ) -> None:
        self.db = db
        self.tables = tables
        self.retention_s = retention_days * DAY_S
        self.pruned = pruned
        self.batch = batch
        self.pause_s = pause_s

    async def prune(self, now: float) -> int:
        """Everything old as of ``now``, batch after batch (a pause between them leaves the
        database thread to the consumers); returns the rows deleted."""
        total = 0
        for item in self.tables:
            while True:
                n = await self.db.run(
                    lambda s, item=item: prune_batch(s, item, now, self.retention_s, self.batch))  # type: ignore[misc]
                if n:
                    self.pruned.labels(item.table.name).inc(n)
                    total += n
                if n < self.batch:
                    break
                await asyncio.sleep(self.pause_s)
        return total

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
