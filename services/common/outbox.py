"""Transactional outbox: records to publish are written in the same transaction as the work.

A handler adds its outgoing records with ``stage`` inside its transaction; after the commit the
batch runner publishes them and deletes them. ``stage`` returns the rows it inserted (with their
ids); the unit of work collects them and, once the transaction has committed, hands them to the
relay (a ``HandOver``, ``OutboxRelay.committed``), so the relay publishes from memory and only
deletes. A crash between commit and publish leaves the rows in the table, and ``pending`` hands
them out again at the next start — at-least-once with no lost output, and downstream consumers
dedupe by ``event_id``.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Integer, LargeBinary, MetaData, String, Table, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from services.common.codec import WireRecord
from services.common.set_statements import insert_rows_returning_ids, one_of


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=True),
        Column("topic", String(200), nullable=False),
        Column("key", LargeBinary, nullable=True),
        Column("value", LargeBinary, nullable=True),  # null: a tombstone
        Column("headers", JSON, nullable=False),
    )


def allow_tombstones(conn: Connection) -> None:
    """Migration step: make ``outbox.value`` nullable in an outbox created before tombstones (a
    no-op where it already is). SQLite cannot alter a column: the table is rebuilt."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE outbox ALTER COLUMN value DROP NOT NULL"))
        return
    info = conn.execute(text("PRAGMA table_info(outbox)")).all()
    if not any(row[1] == "value" and row[3] for row in info):
        return
    (ddl,) = conn.execute(
        text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outbox'")).one()
    conn.execute(text("ALTER TABLE outbox RENAME TO outbox_before_tombstones"))
    conn.execute(text(ddl.replace("value BLOB NOT NULL", "value BLOB")))
    conn.execute(text("INSERT INTO outbox SELECT * FROM outbox_before_tombstones"))
    conn.execute(text("DROP TABLE outbox_before_tombstones"))


@dataclass(frozen=True)
class Staged:
    id: int
    topic: str
    record: WireRecord


HandOver = Callable[[Sequence[Staged]], None]
"""Takes the rows one transaction staged, right after it committed, in commit order."""


def stage(session: Session, table: Table, topic: str,
          records: Sequence[WireRecord]) -> list[Staged]:
    """Add records for ``topic`` (a public topic name) to the outbox, in the caller's
    transaction; returns the rows inserted, for the caller to hand over once it has committed."""
    if not records:
        return []
    rows: list[dict[str, Any]] = [
        {
            "topic": topic,
            "key": r.key,
            "value": r.value,
            # values are bytes: kept as base64 so any header survives the JSON column
            "headers": [[k, _b64(v)] for k, v in r.headers],
        }
        for r in records
    ]
    ids = insert_rows_returning_ids(session, table, rows)
    return [Staged(id=i, topic=topic, record=r) for i, r in zip(ids, records, strict=True)]


@functools.lru_cache(maxsize=256)
def _b64(value: bytes) -> str:
    """Most header values repeat (type, source, content type): each is encoded once."""
    return base64.b64encode(value).decode("ascii")


def pending(session: Session, table: Table, limit: int = 5000) -> list[Staged]:
    rows = session.execute(table.select().order_by(table.c.id).limit(limit)).all()
    return [
        Staged(
            id=row.id,
            topic=row.topic,
            record=WireRecord(
                key=row.key,
                value=row.value,
                headers=[(k, base64.b64decode(v)) for k, v in row.headers],
            ),
        )
        for row in rows
    ]


def delete(session: Session, table: Table, ids: Sequence[int]) -> None:
    for condition in one_of(session, table.c.id, list(ids)):
        session.execute(table.delete().where(condition))
