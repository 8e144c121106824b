"""The "seen this event" record every consumer keeps, in the same transaction as its work.

Each service's metadata gets a ``processed_events`` table from ``processed_events_table``;
``already_processed`` and ``mark_processed`` read and write it. Event ids are stored as text.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, MetaData, String, Table, select
from sqlalchemy.orm import Session

from services.common.set_statements import insert_rows, one_of

EventId = str | uuid.UUID


def processed_events_table(metadata: MetaData) -> Table:
    return Table(
        "processed_events",
        metadata,
        Column("event_id", String(36), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False),
    )


def already_processed(session: Session, table: Table, event_ids: Iterable[EventId]) -> set[str]:
    """The ids among ``event_ids`` recorded before (as text)."""
    ids = list(dict.fromkeys(str(e) for e in event_ids))
    found: set[str] = set()
    for condition in one_of(session, table.c.event_id, ids):
        found.update(session.scalars(select(table.c.event_id).where(condition)))
    return found


def mark_processed(session: Session, table: Table, event_ids: Iterable[EventId]) -> None:
    ids = list(dict.fromkeys(str(e) for e in event_ids))
    stamp = datetime.now(UTC)
    insert_rows(session, table, [{"event_id": e, "processed_at": stamp} for e in ids])
