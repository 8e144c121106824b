"""The tables every service keeps beside its own, and the set-based statements they use.

- **Set-based statements**: one statement per batch, cheap for the worker's CPU (``one_of``,
  ``insert_rows``, ``insert_rows_returning_ids``; the services' repositories use them too).
- **Processed events**: the "seen this event" record every consumer keeps, in the same
  transaction as its work (``already_processed``, ``mark_processed``).
- **The transactional outbox**: records to publish, written in the same transaction as the work
  (``stage_outbox``; ``pending_outbox`` and ``delete_outbox`` for the relay).
"""

from __future__ import annotations

import base64
import functools
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ColumnElement,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    any_,
    bindparam,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from services.common.codec import WireRecord

# --- Set-based statements ------------------------------------------------------------------
# A batch of 500 events is a handful of statements. With plain SQLAlchemy on PostgreSQL, an
# ``IN (...)`` list or a multi-row ``INSERT ... VALUES`` is a new statement text of thousands of
# placeholders each time, which psycopg parses in Python (no statement cache at that size). On
# PostgreSQL these helpers send one array per column instead: ``= ANY(%(ids)s)`` and
# ``INSERT ... SELECT * FROM unnest(...)``, the same short text every time, with the values
# adapted by psycopg's C code. On SQLite (where the statements are cheap and bound parameters are
# limited) they fall back to chunked ``IN`` lists and ``executemany``.
#
# The PostgreSQL path hands values to the driver as they are: the tables that use it hold
# strings, bytes, numbers, booleans, UUIDs, aware datetimes and JSON (dumped here).

_CHUNK = 500  # keeps SQLite's IN lists under its bound-parameter limit


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def one_of(session: Session, column: Column[Any], values: Sequence[Any]) -> Iterator[ColumnElement[bool]]:
    """Conditions ``column`` is one of ``values``, to run one query each: a single
    ``= ANY(array)`` on PostgreSQL, chunked ``IN`` lists elsewhere; none for no values."""
    if not values:
        return
    if is_postgres(session):
        yield column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
        return
    for start in range(0, len(values), _CHUNK):
        yield column.in_(values[start:start + _CHUNK])


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (all with the same keys) in one statement."""
    if not rows:
        return
    if not is_postgres(session):
        session.execute(table.insert(), list(rows))
        return
    sql, params = _unnest_insert(session, table, rows)
    session.connection().exec_driver_sql(sql, params)


def insert_rows_returning_ids(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], id_column: str = "id"
) -> list[int]:
    """Insert ``rows`` and return the generated ``id_column`` values, in the order of ``rows``."""
    if not rows:
        return []
    if not is_postgres(session):
        column = table.c[id_column]
        return list(session.scalars(
            table.insert().returning(column, sort_by_parameter_order=True), list(rows)
        ))
    # ids taken from the sequence first, so their order is the rows' order by construction
    ids = [row[0] for row in session.connection().exec_driver_sql(
        "SELECT nextval(pg_get_serial_sequence(%(table)s, %(column)s)) "
        "FROM generate_series(1, %(n)s)",
        {"table": table.name, "column": id_column, "n": len(rows)},
    )]
    sql, params = _unnest_insert(
        session, table, [{id_column: i, **row} for i, row in zip(ids, rows, strict=True)]
    )
    session.connection().exec_driver_sql(sql, params)
    return ids


def _unnest_insert(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]]
) -> tuple[str, dict[str, Any]]:
    dialect = session.get_bind().dialect
    names = list(rows[0])
    params: dict[str, Any] = {}
    arrays: list[str] = []
    for i, name in enumerate(names):
        column = table.c[name]
        values = [row[name] for row in rows]
        if isinstance(column.type, JSON):
            values = [None if v is None else json.dumps(v) for v in values]
        params[f"c{i}"] = values
        arrays.append(f"%(c{i})b::{column.type.compile(dialect=dialect)}[]")
    quote = dialect.identifier_preparer
    columns = ", ".join(quote.quote(n) for n in names)
    # names and types come from the Table's metadata, values travel as parameters
    sql = f"INSERT INTO {quote.format_table(table)} ({columns}) SELECT * FROM unnest({', '.join(arrays)})"  # noqa: S608
    return sql, params


# --- Processed events ------------------------------------------------------------------------
# Each service's metadata gets a ``processed_events`` table from ``processed_events_table``;
# ``already_processed`` and ``mark_processed`` read and write it. Event ids are stored as text.

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


# --- The transactional outbox ----------------------------------------------------------------
# A handler adds its outgoing records with ``stage_outbox`` inside its transaction. It returns the
# rows it inserted (with their ids); the unit of work collects them and, once the transaction has
# committed, hands them to the relay (a ``HandOver``, ``OutboxRelay.committed``), so the relay
# publishes from memory and only deletes. A crash between commit and publish leaves the rows in
# the table, and ``pending_outbox`` hands them out again at the next start — at-least-once with
# no lost output, and downstream consumers dedupe by ``event_id``.

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


def stage_outbox(session: Session, table: Table, topic: str,
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


def pending_outbox(session: Session, table: Table, limit: int = 5000) -> list[Staged]:
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


def delete_outbox(session: Session, table: Table, ids: Sequence[int]) -> None:
    for condition in one_of(session, table.c.id, list(ids)):
        session.execute(table.delete().where(condition))
