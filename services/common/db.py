"""The database every service works in: SQLAlchemy engines, one transaction at a time off the
event loop, and the tables every service keeps beside its own.

Services use the synchronous ORM in one dedicated thread per database: a batch of events is
one call, one transaction, so the event loop never blocks on I/O and SQLite never sees two
writers from one process. ``postgresql+psycopg://`` and ``sqlite:///`` URLs both work.

- **Set-based statements**: one statement per batch, cheap for the worker's CPU (``one_of``,
  ``insert_rows``, ``insert_columns_returning_ids``, ``unnest_columns``; the services'
  repositories use them too). Plain inserts on PostgreSQL are a binary ``COPY``.
- **Processed events**: the "seen this event" record every consumer keeps, in the same
  transaction as its work (``already_processed``, ``mark_processed``).
- **The transactional outbox**: records to publish, written in the same transaction as the work
  (``stage_outbox``; ``pending_outbox`` and ``delete_outbox`` for the relay).
- **Sliding windows**: at most ``max_events`` of a subject in any ``window_s`` seconds, exact
  over every worker (``window_tables``, ``take_window``): recovery's limits, support's checks.

Schema migrations are in ``services.common.migrations``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import math
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import psycopg
from psycopg.types.array import ListBinaryDumper
from pydantic_core import to_json
from sqlalchemy import (
    JSON,
    REAL,
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    DateTime,
    Delete,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Select,
    SmallInteger,
    String,
    Table,
    TypeDecorator,
    Uuid,
    any_,
    bindparam,
    cast,
    create_engine,
    func,
    select,
    text,
)
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import Subquery
from sqlalchemy.types import TypeEngine

from services.common.codec import WireRecord

T = TypeVar("T")
log = logging.getLogger(__name__)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @sa_event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)

    @sa_event.listens_for(engine, "connect")
    def _postgres_session(dbapi_conn: Any, _record: Any) -> None:
        # psycopg prepares a statement run five times, and PostgreSQL may then keep a generic
        # plan made while the tables were still empty: a sequential scan for ``= ANY(array)``
        # lookups (the set-based statements below), which got slower with every batch. A custom plan
        # per execution keeps the index scans.
        with dbapi_conn.cursor() as cursor:
            cursor.execute("SET plan_cache_mode = force_custom_plan")
        dbapi_conn.commit()
        # Python lists (the arrays of the set-based statements below) in binary: the text form escapes
        # every element with a regular expression, in Python
        dbapi_conn.adapters.register_dumper(list, ListBinaryDumper)

    return engine


# SQLSTATEs of a database away, busy or failing over rather than of a bad record: a read-only
# transaction (25006: a writer address still on a demoted primary), a serialization failure or
# deadlock (40001, 40P01), and the classes connection exception (08), insufficient resources (53)
# and operator intervention (57P: shutting down, cannot connect now)
TRANSIENT_SQLSTATES = frozenset({"25006", "40001", "40P01"})
TRANSIENT_SQLSTATE_PREFIXES = ("08", "53", "57P")


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying the whole batch for: the database is away or busy (an
    ``OperationalError``, an invalidated connection, or one of the SQLSTATEs above, whatever
    class the driver raises them as: psycopg raises 25006 as an ``InternalError``)."""
    if isinstance(exc, OperationalError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and (
        sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith(TRANSIENT_SQLSTATE_PREFIXES))


AfterCommit = Callable[[T], object]


class Database:
    """One engine and one worker thread; ``await db.run(fn)`` runs ``fn(session)`` in a transaction.

    ``after_commit(result)``, when given, is called in the database thread right after the
    transaction committed and before the next one starts, so callbacks run in commit order even
    for transactions submitted ahead and awaited later; a transaction that fails calls nothing.
    Units of work hand the outbox rows they staged to the relay this way."""

    def __init__(self, *, url: str, name: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"db-{name}")

    def run_sync(self, fn: Callable[[Session], T],
                 after_commit: AfterCommit[T] | None = None) -> T:
        with Session(self.engine, expire_on_commit=False) as session:
            with session.begin():
                result = fn(session)
            if after_commit is not None:
                after_commit(result)
            return result

    async def run(self, fn: Callable[[Session], T], *,
                  after_commit: AfterCommit[T] | None = None) -> T:
        return await self.submit(fn, after_commit=after_commit)

    def submit(self, fn: Callable[[Session], T], *,
               after_commit: AfterCommit[T] | None = None) -> asyncio.Future[T]:
        """Queue ``fn`` now (transactions run one at a time, in the order submitted); await the
        result later, or not at all."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, self.run_sync, fn, after_commit)

    async def ping(self) -> bool:
        def _ping(session: Session) -> bool:
            session.connection().exec_driver_sql("SELECT 1")
            return True

        try:
            return await asyncio.wait_for(self.run(_ping), timeout=5)
        except Exception:  # any failure means "not ready"
            return False

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()


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


# --- Statements built once ------------------------------------------------------------------
# A Core statement built for each call costs several times its execution on a hot path (about
# 0.7 ms against 0.2 ms for a small SELECT on SQLite): building it, then its cache key. The
# statements a request runs are built once (``functools.cache``, one per dialect where they
# differ) with named parameters; a list goes in through ``any_of`` and ``chunks``.


def any_of(column: Column[Any], name: str, postgres: bool) -> ColumnElement[bool]:
    """``column`` is one of the list bound to ``name`` when the statement runs: ``= ANY(array)``
    on PostgreSQL (one statement text whatever the length), an expanding ``IN`` elsewhere."""
    if postgres:
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def chunks(session: Session, values: Iterable[Any]) -> Iterator[list[Any]]:
    """``values`` as lists to bind to an ``any_of`` parameter, one statement each: all at once on
    PostgreSQL, a few hundred at a time elsewhere; none for no values."""
    values = list(values)
    if not values:
        return
    if is_postgres(session):
        yield values
        return
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def one_of(session: Session, column: Column[Any], values: Sequence[Any]) -> Iterator[ColumnElement[bool]]:
    """Conditions ``column`` is one of ``values``, to run one query each: a single
    ``= ANY(array)`` on PostgreSQL, chunked ``IN`` lists elsewhere (``chunks``); none for no
    values. For a statement built per call; a hot path's is built once (``any_of``)."""
    postgres = is_postgres(session)
    for part in chunks(session, values):
        yield (column == any_(bindparam(None, part, type_=ARRAY(column.type))) if postgres
               else column.in_(part))


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (all with the same keys) in one statement."""
    if not rows:
        return
    if not is_postgres(session):
        session.execute(table.insert(), list(rows))
        return
    _insert_columns(session, table, {name: [row[name] for row in rows] for name in rows[0]})


def unnest_columns(table: Table, columns: Mapping[str, list[Any]]) -> Subquery:
    """PostgreSQL only: rows given as one list per column (all of the same length) as a subquery,
    one column per name, typed as ``table``'s column of that name: ``SELECT unnest(array) AS
    name, ...``. An ``UPDATE`` joined to it by key writes a batch of rows, each its own values, in
    one statement of the same text whatever the batch size."""
    arrays = {name: ARRAY(table.c[name].type) for name in columns}
    return select(*(
        func.unnest(cast(bindparam(None, values, type_=arrays[name]), arrays[name]),
                    type_=table.c[name].type).label(name)
        for name, values in columns.items()
    )).subquery()


def insert_columns_returning_ids(
    session: Session, table: Table, columns: Mapping[str, list[Any]], id_column: str = "id",
    *, json_text: Collection[str] = (),
) -> list[int]:
    """PostgreSQL only: insert rows given as one list per column (all of the same length), which a
    caller building many rows fills without a dict each, and return the generated ``id_column``
    values in the order of the rows; the JSON columns named in ``json_text`` hold JSON text."""
    n = len(next(iter(columns.values())))
    # ids taken from the sequence first, so their order is the rows' order by construction
    ids = [row[0] for row in session.connection().exec_driver_sql(
        "SELECT nextval(pg_get_serial_sequence(%(table)s, %(column)s)) "
        "FROM generate_series(1, %(n)s)",
        {"table": table.name, "column": id_column, "n": n},
    )]
    _insert_columns(session, table, {id_column: ids, **columns}, json_text)
    return ids


def _insert_columns(session: Session, table: Table, columns: Mapping[str, list[Any]],
                    json_text: Collection[str] = (), *, new_only: str | None = None) -> list[Any]:
    """``new_only``: rows that would conflict with one already there are skipped, and the
    ``new_only`` column of those inserted is returned (an ``INSERT … SELECT * FROM unnest``);
    without it, a binary ``COPY`` where every column's type has a binary form here
    (``_copy_types``)."""
    dialect = session.get_bind().dialect
    columns = {name: [None if v is None else json.dumps(v) for v in values]
               if isinstance(table.c[name].type, JSON) and name not in json_text else values
               for name, values in columns.items()}
    if new_only is None and (types := _copy_types(table, tuple(columns))) is not None:
        _copy(session, table, columns, types)
        return []
    params: dict[str, Any] = {}
    arrays: list[str] = []
    for i, (name, values) in enumerate(columns.items()):
        column = table.c[name]
        params[f"c{i}"] = values
        arrays.append(f"%(c{i})b::{column.type.compile(dialect=dialect)}[]")
    quote = dialect.identifier_preparer
    names = ", ".join(quote.quote(n) for n in columns)
    # names and types come from the Table's metadata, values travel as parameters
    sql = f"INSERT INTO {quote.format_table(table)} ({names}) SELECT * FROM unnest({', '.join(arrays)})"  # noqa: S608
    if new_only is None:
        session.connection().exec_driver_sql(sql, params)
        return []
    sql += f" ON CONFLICT DO NOTHING RETURNING {quote.quote(new_only)}"
    return [row[0] for row in session.connection().exec_driver_sql(sql, params)]


# the binary form psycopg writes for a column type (a ``TypeDecorator`` by its ``impl``); text,
# JSON text included, goes as ``text``, which every text-like column's binary input reads
_COPY_TYPES: tuple[tuple[type[TypeEngine[Any]], str], ...] = (
    (Uuid, "uuid"), (Boolean, "bool"), (BigInteger, "int8"), (SmallInteger, "int2"),
    (Integer, "int4"), (LargeBinary, "bytea"), (JSON, "text"), (String, "text"),
)


@functools.cache
def _copy_types(table: Table, names: tuple[str, ...]) -> tuple[str, ...] | None:
    """The psycopg type of each column for a binary ``COPY``, or None if one has none here (a
    ``Numeric``, an array…)."""
    types: list[str] = []
    for name in names:
        type_ = table.c[name].type
        if isinstance(type_, TypeDecorator):
            type_ = type_.impl_instance
        if isinstance(type_, DateTime):
            types.append("timestamptz" if type_.timezone else "timestamp")
            continue
        if isinstance(type_, Float):  # PostgreSQL's FLOAT(p) is a real up to 24 bits
            small = isinstance(type_, REAL) or (type_.precision or 53) <= 24
            types.append("float4" if small else "float8")
            continue
        found = next((pg for kind, pg in _COPY_TYPES if isinstance(type_, kind)), None)
        if found is None:
            return None
        types.append(found)
    return tuple(types)


def _copy(session: Session, table: Table, columns: Mapping[str, list[Any]],
          types: Sequence[str]) -> None:
    """PostgreSQL: rows given as one list per column written with a binary ``COPY … FROM
    STDIN``, in the session's transaction. Each value goes out in its column's binary form, in
    C, where the arrays of ``INSERT … SELECT * FROM unnest`` are built element by element in
    Python and unpacked again by the server: for a batch of new accounts, a third of the client's
    CPU and three fifths of the wall time per row (docs/performance.md, 2026-12-06)."""
    dialect = session.get_bind().dialect
    quote = dialect.identifier_preparer
    names = ", ".join(quote.quote(n) for n in columns)
    # names come from the Table's metadata, values travel as data
    statement = f"COPY {quote.format_table(table)} ({names}) FROM STDIN (FORMAT BINARY)"
    connection = session.connection()
    driver = connection.connection.driver_connection
    assert driver is not None
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(list(types))
            for row in zip(*columns.values(), strict=True):
                copy.write_row(row)
    except psycopg.Error as exc:
        # as SQLAlchemy raises a driver's error for the statements it runs: its class
        # (``IntegrityError``, ``OperationalError``…, which ``is_transient`` and the handlers
        # read), and a connection that was lost is not handed out again
        driver_error: Any = exc  # the dialect's driver module's error: psycopg's
        lost = dialect.is_disconnect(driver_error, connection.connection, None)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(statement, None, exc, psycopg.Error, dialect=dialect,
                                  connection_invalidated=lost) from exc


# --- Processed events ------------------------------------------------------------------------
# Each service's metadata gets a ``processed_events`` table from ``processed_events_table``;
# ``claim_events`` records a batch's ids and returns the new ones (``already_processed`` only
# reads, for a stage that decides before it writes). Event ids are stored as text.

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
    query = _processed_query(table, is_postgres(session))
    for part in chunks(session, ids):
        found.update(session.scalars(query, {"ids": part}))
    return found


@functools.cache
def _processed_query(table: Table, postgres: bool) -> Select[Any]:
    return select(table.c.event_id).where(any_of(table.c.event_id, "ids", postgres))


def mark_processed(session: Session, table: Table, event_ids: Iterable[EventId]) -> None:
    ids = list(dict.fromkeys(str(e) for e in event_ids))
    stamp = datetime.now(UTC)
    insert_rows(session, table, [{"event_id": e, "processed_at": stamp} for e in ids])


def claim_events(session: Session, table: Table, event_ids: Iterable[EventId]) -> set[str]:
    """Record ``event_ids`` as processed in the caller's transaction; returns those not recorded
    before (as text): the events this transaction is the one to process.

    On PostgreSQL this is one statement that skips the ids already there. An id that another
    transaction has claimed and not yet committed makes it wait for that one, and then it is
    taken (or, if that one rolled back, claimed here), so two workers handed the same event at
    once (a rebalance) process it once, and neither fails. The ids go in sorted order, so two
    claims never wait for each other in a cycle. SQLite lets one transaction write at a time:
    there the insert waits for the write lock, and then skips the same way."""
    ids = sorted({str(e) for e in event_ids})
    if not ids:
        return set()
    stamp = datetime.now(UTC)
    if is_postgres(session):
        return set(_insert_columns(session, table, {"event_id": ids, "processed_at": [stamp] * len(ids)},
                                   new_only="event_id"))
    new: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        rows = [{"event_id": e, "processed_at": stamp} for e in ids[start:start + _CHUNK]]
        new.update(session.scalars(sqlite_insert(table).values(rows).on_conflict_do_nothing()
                                   .returning(table.c.event_id)))
    return new


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
    transaction; returns the rows inserted, for the caller to hand over once it has committed.

    A tombstone is the last record of its key: the rows of that key still in the outbox for
    ``topic`` go first. Published already (their delete lost to a database blip), or committed by
    a worker that died, they would otherwise go out at the next read or sweep of the table, after
    the tombstone, and compaction would keep them as the key's last record: an erased
    subscriber's record back on the topic for good. A row this worker's relay holds in memory is
    still published from there, ahead of the tombstone (its transaction committed first, and one
    relay publishes in commit order). A row another worker's relay holds is not ordered against
    this worker's tombstone: two producers' records reach the broker in either order (see
    docs/reliability.md, "Known limits")."""
    if not records:
        return []
    ended = list(dict.fromkeys(r.key for r in records if r.value is None and r.key is not None))
    for condition in one_of(session, table.c.key, ended):
        session.execute(table.delete().where(table.c.topic == topic, condition))
    # header values are bytes: kept as base64 so any header survives the JSON column
    headers = [[[k, _b64(v)] for k, v in r.headers] for r in records]
    if is_postgres(session):  # one list per column, the headers as JSON text (bulk loads)
        ids = insert_columns_returning_ids(session, table, {
            "topic": [topic] * len(records),
            "key": [r.key for r in records],
            "value": [r.value for r in records],
            "headers": [to_json(h).decode() for h in headers],
        }, json_text={"headers"})
    else:
        ids = list(session.scalars(table.insert().returning(table.c.id, sort_by_parameter_order=True), [
            {"topic": topic, "key": r.key, "value": r.value, "headers": h}
            for r, h in zip(records, headers, strict=True)
        ]))
    return [Staged(id=i, topic=topic, record=r) for i, r in zip(ids, records, strict=True)]


class SqlOutbox:
    """The outbox port of one transaction: stages into ``table`` and keeps the rows it staged, in
    order, for the unit of work to hand over once the transaction has committed."""

    def __init__(self, session: Session, table: Table) -> None:
        self.session = session
        self.table = table
        self.staged: list[Staged] = []

    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        self.staged.extend(stage_outbox(self.session, self.table, topic, records))


class StagesOutbox(Protocol):
    """A repository of one transaction that stages through a ``SqlOutbox``."""

    @property
    def outbox(self) -> SqlOutbox: ...


R = TypeVar("R", bound=StagesOutbox)


def in_transaction(repository: Callable[[Session], R], work: Callable[[R], T],
                   session: Session) -> tuple[T, list[Staged]]:
    """``work`` on a ``repository`` bound to ``session``, and the outbox rows it staged."""
    repo = repository(session)
    return work(repo), repo.outbox.staged


class RepositoryUnitOfWork(Generic[R]):
    """The base of every service's ``SqlUnitOfWork``, over the class (``repository``) that binds
    the service's repositories to a session: ``run(work)`` is ``work(repository(session))`` in one
    transaction, and the outbox rows it staged are handed over (to the relay) in the database
    thread right after the commit, so in commit order."""

    repository: Callable[[Session], R]

    def __init__(self, *, db: Database, hand_over: HandOver) -> None:
        self.db = db
        self.hand_over = hand_over

    async def run(self, work: Callable[[R], T]) -> T:
        result, _ = await self.db.run(functools.partial(in_transaction, self.repository, work),
                                      after_commit=lambda done: self.hand_over(done[1]))
        return result


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
    statement = _outbox_delete(table, is_postgres(session))
    for part in chunks(session, ids):
        session.execute(statement, {"ids": part})


@functools.cache
def _outbox_delete(table: Table, postgres: bool) -> Delete:
    return table.delete().where(any_of(table.c.id, "ids", postgres))


# --- Sliding windows -------------------------------------------------------------------------
# Sliding windows that every worker of a service shares: at most ``max_events`` events of a
# subject in any ``window_s`` seconds. Recovery counts logins per client address, codes per
# account a day and the hourly SMS budget in them; registration counts support's identity checks.
#
# Per subject a ring of ``max_events`` slots (``window_slots``) holds when each of the last
# ``max_events`` events leaves the window; the next event may take the slot after the newest,
# which holds the oldest of them, once that one has left. The subject's ``windows`` row is
# upserted first: that locks it (PostgreSQL: until commit; SQLite lets one transaction write at a
# time), so simultaneous takes of one subject, on one worker or on several, go one after another.
# A ring never lets in more than ``max_events``: a take needs its slot free, and the others hold at
# most ``max_events - 1``; it is exact while events come in time order (workers' clocks apart can
# only make it refuse a little early). When ``max_events`` changes, the ring is laid out again
# from the events still inside their window (``_lay_out_window``).
#
# Each service keeps the two tables in its own database (``window_tables``); the statements are
# written once as text, which both dialects read alike (SQLite ≥ 3.35 shares the upsert syntax)
# and which is compiled once per dialect — Core constructs cost about as much again to build
# every call.

def window_tables(metadata: MetaData) -> tuple[Table, Table]:
    """``windows`` (a subject's ring: the slot the next event takes, the ring's size, when the
    last of its slots leaves) and ``window_slots`` (when each counted event leaves). Slots out of
    their window may be pruned at any time (``prune``): a free slot and a missing one are alike."""
    windows = Table(
        "windows", metadata,
        Column("subject", String(80), primary_key=True),
        Column("next_slot", Integer, nullable=False),
        Column("size", Integer, nullable=False),  # the window's max_events when the ring was laid out
        Column("busy_until", Float, nullable=False),  # when the last of its slots leaves the window
        Index("ix_windows_busy_until", "busy_until"),
    )
    window_slots = Table(
        "window_slots", metadata,
        Column("subject", String(80), primary_key=True),
        Column("slot", Integer, primary_key=True),
        Column("until", Float, nullable=False),  # the event's time plus the window
        Index("ix_window_slots_until", "until"),
    )
    return windows, window_slots


_WINDOW_HEAD = text(
    "INSERT INTO windows (subject, next_slot, size, busy_until) VALUES (:subject, 0, :size, :now) "
    "ON CONFLICT (subject) DO UPDATE SET next_slot = windows.next_slot "
    "RETURNING next_slot, size, busy_until")
# a statement of its own after the lock: on PostgreSQL it then sees what the holder committed
_WINDOW_SLOT = text("SELECT until FROM window_slots WHERE subject = :subject AND slot = :slot")
_WINDOW_WRITE = text(
    "INSERT INTO window_slots (subject, slot, until) VALUES (:subject, :slot, :until) "
    "ON CONFLICT (subject, slot) DO UPDATE SET until = :until")
_WINDOW_ADVANCE = text(
    "UPDATE windows SET next_slot = :next_slot, busy_until = :busy_until WHERE subject = :subject")
# PostgreSQL: the slot read, and (when free) its write and the advance, in one round trip; the
# statement starts after the lock was taken, so its snapshot holds what the holder committed
_WINDOW_SLOT_PG = text(
    "WITH cur AS (SELECT until FROM window_slots WHERE subject = :subject AND slot = :slot), "
    "free AS (SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM cur WHERE until > :now)), "
    "written AS (INSERT INTO window_slots (subject, slot, until) SELECT :subject, :slot, :until "
    "FROM free ON CONFLICT (subject, slot) DO UPDATE SET until = :until RETURNING 1), "
    "advanced AS (UPDATE windows SET next_slot = :next_slot, busy_until = :busy_until "
    "WHERE subject = :subject AND EXISTS (SELECT 1 FROM free) RETURNING 1) "
    "SELECT (SELECT until FROM cur)")  # a modifying sub-statement runs whether read or not
_WINDOW_PEEK = text(
    "SELECT w.size, s.until FROM windows w LEFT JOIN window_slots s "
    "ON s.subject = w.subject AND s.slot = w.next_slot WHERE w.subject = :subject")
_WINDOW_INSIDE = text("SELECT until FROM window_slots WHERE subject = :subject AND until > :now "
               "ORDER BY until")
_WINDOW_CLEAR = text("DELETE FROM window_slots WHERE subject = :subject")
_WINDOW_PUT = text("INSERT INTO window_slots (subject, slot, until) VALUES (:subject, :slot, :until)")
_WINDOW_RESIZE = text("UPDATE windows SET next_slot = :next_slot, size = :size WHERE subject = :subject")
_WINDOW_PRUNE_SLOTS = text("DELETE FROM window_slots WHERE until < :before")
_WINDOW_PRUNE_RINGS = text("DELETE FROM windows WHERE busy_until < :before")
# PostgreSQL: rows another transaction holds are left for a later pass. A write holds the rings
# it took until it commits, and a pass that waited for one while its own transaction holds
# others (recovery prunes in a write) could wait in a circle with that write.
_WINDOW_PRUNE_SLOTS_PG = text(
    "DELETE FROM window_slots WHERE (subject, slot) IN (SELECT subject, slot FROM window_slots "
    "WHERE until < :before FOR UPDATE SKIP LOCKED)")
_WINDOW_PRUNE_RINGS_PG = text(
    "DELETE FROM windows WHERE subject IN (SELECT subject FROM windows "
    "WHERE busy_until < :before FOR UPDATE SKIP LOCKED)")
_WINDOW_FORGET_SLOTS = text("DELETE FROM window_slots WHERE subject IN :subjects").bindparams(
    bindparam("subjects", expanding=True))
_WINDOW_FORGET_RINGS = text("DELETE FROM windows WHERE subject IN :subjects").bindparams(
    bindparam("subjects", expanding=True))
_WINDOW_CHUNK = 500  # subjects per statement when forgetting


def take_window(session: Session, subject: str, *, max_events: int, window_s: float,
                now: float) -> int | None:
    """Count one event of ``subject`` if its sliding window has room: ``None``; otherwise the
    seconds until the oldest event counted leaves the window. A limit of 0 counts nothing. One
    group of ``take_windows``."""
    answer = take_windows(session, [[(subject, max_events, window_s)]], now)[0]
    return None if answer is None else answer[1]


def _ring_head(session: Session, subject: str, size: int, now: float) -> tuple[int, float]:
    """Locks ``subject``'s ring (its ``windows`` row, made if missing) until commit; returns the
    slot the next event takes (the ring laid out again if ``size`` changed) and when the last
    of its slots leaves."""
    next_slot, laid_out_for, busy_until = session.execute(
        _WINDOW_HEAD, {"subject": subject, "size": size, "now": now}).one()
    slot = next_slot if laid_out_for == size else _lay_out_window(session, subject, size, now)
    return slot, busy_until


def peek_window(session: Session, subject: str, *, max_events: int, window_s: float,
                now: float) -> int | None:
    """What ``take_window`` would answer now, counting nothing and locking nothing: a look
    ahead, which another writer may make stale at once (a ring laid out for another size is
    left to the take)."""
    if max_events <= 0 or window_s <= 0:
        return None
    row = session.execute(_WINDOW_PEEK, {"subject": subject}).first()
    if row is None or row.size != max_events or row.until is None or row.until <= now:
        return None
    return max(1, math.ceil(row.until - now))


def take_windows(session: Session, groups: Sequence[Sequence[tuple[str, int, float]]],
                 now: float) -> list[tuple[int, int] | None]:
    """For each group of (subject, max_events, window_s) in order: one event in every window of
    the group if each has room (``None``), else none, and (the position in the group of the
    first without room, the seconds until it has room). A group names a subject once; a window
    with a limit of 0 counts nothing. Every ring the groups name is locked first, in the order
    of its subject, so that writers taking overlapping groups wait for each other in line, never
    in a circle."""
    sizes = {subject: max_events for group in groups for subject, max_events, window_s in group
             if max_events > 0 and window_s > 0}
    heads = {subject: _ring_head(session, subject, sizes[subject], now) for subject in sorted(sizes)}
    postgres = session.get_bind().dialect.name == "postgresql"
    answers: list[tuple[int, int] | None] = []
    for group in groups:
        counted = [(i, t) for i, t in enumerate(group) if t[1] > 0 and t[2] > 0]
        advances: list[dict[str, Any]] = []
        for _, (subject, max_events, window_s) in counted:
            slot, busy_until = heads[subject]
            until = now + window_s
            advances.append({"subject": subject, "slot": slot, "until": until,
                             "next_slot": (slot + 1) % max_events,
                             "busy_until": max(until, busy_until)})
        if postgres and len(counted) == 1:
            # one window (a login's address, a support check): the slot read and, when free, its
            # write and the advance in one round trip
            frees_at = session.execute(_WINDOW_SLOT_PG, {**advances[0], "now": now}).scalar()
            refused = _refusal(counted[0][0], frees_at, now)
        else:
            refused = None
            for (i, _), advance in zip(counted, advances, strict=True):
                refused = _refusal(i, session.execute(_WINDOW_SLOT, advance).scalar(), now)
                if refused is not None:
                    break  # the first window without room answers; the others are not read
            if refused is None:
                for advance in advances:
                    session.execute(_WINDOW_WRITE, advance)
                    session.execute(_WINDOW_ADVANCE, advance)
        if refused is None:
            heads.update({a["subject"]: (a["next_slot"], a["busy_until"]) for a in advances})
        answers.append(refused)
    return answers


def _refusal(position: int, frees_at: float | None, now: float) -> tuple[int, int] | None:
    """A window's answer: ``None`` when its slot is free, else (``position``, the seconds until
    the slot frees)."""
    if frees_at is not None and frees_at > now:
        return position, max(1, math.ceil(frees_at - now))
    return None


def _lay_out_window(session: Session, subject: str, size: int, now: float) -> int:
    """The ring of ``subject`` laid out again for ``size`` slots from the events still inside
    their window, oldest first: the newest ``size`` in slots 0, 1, …, any older ones beyond the
    ring (slots ``size`` and up, never the next slot: they leave before every slot of the ring,
    and count again if the limit is raised). Returns the next slot."""
    inside = list(session.execute(_WINDOW_INSIDE, {"subject": subject, "now": now}).scalars())
    ring, older = inside[-size:], inside[:-size]
    session.execute(_WINDOW_CLEAR, {"subject": subject})
    rows = [{"subject": subject, "slot": i, "until": until} for i, until in enumerate(ring)]
    rows += [{"subject": subject, "slot": size + i, "until": until} for i, until in enumerate(older)]
    if rows:
        session.execute(_WINDOW_PUT, rows)
    next_slot = len(ring) % size
    session.execute(_WINDOW_RESIZE, {"subject": subject, "next_slot": next_slot, "size": size})
    return next_slot


def prune_windows(session: Session, before: float) -> None:
    """Slots whose event left its window before ``before`` and rings all of whose events did
    (on PostgreSQL those no other transaction holds: the rest go at a later pass)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    session.execute(_WINDOW_PRUNE_SLOTS_PG if postgres else _WINDOW_PRUNE_SLOTS, {"before": before})
    session.execute(_WINDOW_PRUNE_RINGS_PG if postgres else _WINDOW_PRUNE_RINGS, {"before": before})


def forget_windows(session: Session, subjects: Collection[str]) -> None:
    """Every count of these subjects (an erasure). The rings go first, as a take locks them
    first: a take and an erasure of one subject wait for each other in line, not in a circle."""
    ordered = sorted(subjects)
    for i in range(0, len(ordered), _WINDOW_CHUNK):
        chunk = ordered[i:i + _WINDOW_CHUNK]
        session.execute(_WINDOW_FORGET_RINGS, {"subjects": chunk})
        session.execute(_WINDOW_FORGET_SLOTS, {"subjects": chunk})
