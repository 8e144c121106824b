"""``SqlUnitOfWork``: one unit of work = one ``Database.run`` = one transaction in the database
thread, with the repositories of ``service_layer.ports`` bound to its session."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from services.common import store
from services.common.codec import WireRecord
from services.common.db import Database
from services.common.store import already_processed, mark_processed
from services.notifier.adapters.repository import SqlDeliveries
from services.notifier.adapters.tables import deliveries, outbox, processed_events, workers
from services.notifier.domain.model import DeliveryState
from services.notifier.service_layer.ports import Committed, Transaction

T = TypeVar("T")


class SqlWorkers:
    def __init__(self, session: Session) -> None:
        self.session = session

    def beat(self, *, worker_id: str, now: datetime) -> None:
        """Registers or refreshes a worker's heartbeat."""
        done = self.session.execute(update(workers).where(workers.c.worker_id == worker_id)
                                    .values(heartbeat_at=now))
        if not getattr(done, "rowcount", 0):
            self.session.execute(
                workers.insert().values(worker_id=worker_id, started_at=now, heartbeat_at=now))

    def forget(self, *, before: datetime) -> None:
        holding = select(deliveries.c.leased_by).where(
            deliveries.c.state == DeliveryState.SENDING.value, deliveries.c.leased_by.is_not(None))
        self.session.execute(delete(workers).where(
            workers.c.heartbeat_at < before, workers.c.worker_id.not_in(holding.scalar_subquery())))


class SqlProcessedEvents:
    def __init__(self, session: Session) -> None:
        self.session = session

    def claim_new(self, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        seen = already_processed(self.session, processed_events, event_ids)
        fresh = [e for e in dict.fromkeys(event_ids) if e not in seen]
        mark_processed(self.session, processed_events, fresh)
        return set(fresh)


class SqlOutbox:
    """Stages into the ``outbox`` table (``services.common.store``) and keeps the rows it
    staged, in order, for the unit of work to hand over once the transaction has committed."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.staged: list[store.Staged] = []

    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        self.staged.extend(store.stage_outbox(self.session, outbox, topic, records))


class SqlTransaction:
    def __init__(self, session: Session) -> None:
        self.deliveries = SqlDeliveries(session)
        self.workers = SqlWorkers(session)
        self.processed = SqlProcessedEvents(session)
        self.outbox = SqlOutbox(session)


class SqlUnitOfWork:
    """One ``Database.run`` = one transaction; the outbox rows it staged are handed over (to the
    relay) in the database thread right after it commits, so in commit order."""

    def __init__(self, *, db: Database, hand_over: store.HandOver) -> None:
        self.db = db
        self.hand_over = hand_over

    async def run(self, work: Callable[[Transaction], T]) -> Committed[T]:
        result, staged = await self.db.run(partial(_in_transaction, work),
                                           after_commit=lambda done: self.hand_over(done[1]))
        return Committed(result, [(s.topic, s.record) for s in staged])


def _in_transaction(work: Callable[[Transaction], T],
                    session: Session) -> tuple[T, list[store.Staged]]:
    tx = SqlTransaction(session)
    return work(tx), tx.outbox.staged
