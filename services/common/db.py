"""SQLAlchemy engines, one transaction at a time off the event loop, and migrations.

Services use the synchronous ORM in one dedicated thread per database: a batch of events is
one call, one transaction, so the event loop never blocks on I/O and SQLite never sees two
writers from one process. ``postgresql+psycopg://`` and ``sqlite:///`` URLs both work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from psycopg.types.array import ListBinaryDumper
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    inspect,
    text,
)
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

T = TypeVar("T")
log = logging.getLogger(__name__)
STAGED_OUTBOX = "selfcare_staged_outbox"  # ``Session.info`` key set by ``outbox.stage``


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
        # lookups (``services.common.bulk``), which got slower with every batch. A custom plan
        # per execution keeps the index scans.
        with dbapi_conn.cursor() as cursor:
            cursor.execute("SET plan_cache_mode = force_custom_plan")
        dbapi_conn.commit()
        # Python lists (the arrays of ``services.common.bulk``) in binary: the text form escapes
        # every element with a regular expression, in Python
        dbapi_conn.adapters.register_dumper(list, ListBinaryDumper)

    return engine


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying the whole batch for: the database is away or busy."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class Database:
    """One engine and one worker thread; ``await db.run(fn)`` runs ``fn(session)`` in a transaction."""

    def __init__(self, *, url: str, name: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"db-{name}")
        # outbox rows staged by committed transactions (``outbox.stage`` lists them in the
        # session), in commit order, for the relay to publish without reading them back
        self.committed_outbox: list[Any] = []

    def run_sync(self, fn: Callable[[Session], T]) -> T:
        with Session(self.engine, expire_on_commit=False) as session:
            with session.begin():
                result = fn(session)
            staged = session.info.get(STAGED_OUTBOX)
            if staged:
                self.committed_outbox.extend(staged)
            return result

    async def run(self, fn: Callable[[Session], T]) -> T:
        return await self.submit(fn)

    def submit(self, fn: Callable[[Session], T]) -> asyncio.Future[T]:
        """Queue ``fn`` now (transactions run one at a time, in the order submitted); await the
        result later, or not at all."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, self.run_sync, fn)

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


@dataclass(frozen=True)
class Migration:
    """One step of a service's schema: applied once, in order, recorded in ``schema_migrations``."""

    version: int
    name: str
    apply: Callable[[Connection], None]


def add_missing_columns(conn: Connection, table: Table, names: Sequence[str]) -> None:
    """Migration step: ``ALTER TABLE ... ADD COLUMN`` for those of ``names`` the table lacks.

    Version 1 of each service creates its tables from the current metadata, so on a fresh
    database the columns exist already; this makes a later step safe on both kinds of database.
    A ``NOT NULL`` column needs a ``server_default`` for the rows already there."""
    present = {c["name"] for c in inspect(conn).get_columns(table.name)}
    for name in names:
        if name in present:
            continue
        column = table.c[name]
        ddl = f"ALTER TABLE {table.name} ADD COLUMN {name} {column.type.compile(conn.dialect)}"
        if column.server_default is not None:
            default = column.server_default.arg  # type: ignore[attr-defined]
            ddl += f" DEFAULT {getattr(default, 'text', default)}"
        if not column.nullable:
            ddl += " NOT NULL"
        conn.execute(text(ddl))


_meta = MetaData()
schema_migrations = Table(
    "schema_migrations",
    _meta,
    Column("version", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)


MIGRATION_LOCK_KEY = 0x5E1FCA4E  # pg_advisory_lock key: one migrator per database at a time


def migrate(engine: Engine, migrations: Sequence[Migration]) -> list[int]:
    """Apply the steps not applied yet, each in its own transaction; returns their versions.

    On PostgreSQL the whole run holds an advisory lock, so that several workers starting together
    on one database do not race to create the same tables."""
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise ValueError("migration versions must be unique and ascending")
    if engine.dialect.name != "postgresql":
        return _migrate(engine, migrations)
    with engine.connect() as lock:
        lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        try:
            return _migrate(engine, migrations)
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            lock.commit()


def _migrate(engine: Engine, migrations: Sequence[Migration]) -> list[int]:
    _meta.create_all(engine, checkfirst=True)
    applied: list[int] = []
    for step in migrations:
        with engine.begin() as conn:
            done = conn.execute(
                schema_migrations.select().where(schema_migrations.c.version == step.version)
            ).first()
            if done is not None:
                continue
            step.apply(conn)
            conn.execute(
                schema_migrations.insert().values(
                    version=step.version, name=step.name, applied_at=datetime.now(UTC)
                )
            )
            applied.append(step.version)
            log.info("migration applied", extra={"version": step.version, "migration": step.name})
    return applied
