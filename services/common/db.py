"""SQLAlchemy engines, one transaction at a time off the event loop, and Alembic migrations.

Services use the synchronous ORM in one dedicated thread per database: a batch of events is
one call, one transaction, so the event loop never blocks on I/O and SQLite never sees two
writers from one process. ``postgresql+psycopg://`` and ``sqlite:///`` URLs both work.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import Engine, MetaData, Table, create_engine, inspect, text
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

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
        # lookups (``services.common.store``), which got slower with every batch. A custom plan
        # per execution keeps the index scans.
        with dbapi_conn.cursor() as cursor:
            cursor.execute("SET plan_cache_mode = force_custom_plan")
        dbapi_conn.commit()
        # Python lists (the arrays of ``services.common.store``) in binary: the text form escapes
        # every element with a regular expression, in Python
        dbapi_conn.adapters.register_dumper(list, ListBinaryDumper)

    return engine


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying the whole batch for: the database is away or busy."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


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


@dataclass(frozen=True)
class MigrationScripts:
    """A service's Alembic migration environment (``services/<name>/migrations``: ``env.py`` and
    ``versions/``). The revisions, not the tables modules, say how a database reaches the schema."""

    location: Path

    def config(self, connection: Connection | None = None) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.location))
        config.attributes["connection"] = connection
        return config

    def head(self) -> str:
        head = ScriptDirectory.from_config(self.config()).get_current_head()
        assert head is not None, f"no revision under {self.location}"
        return head

    def revisions(self) -> list[str]:
        """Every revision, oldest first (as an upgrade from an empty database applies them)."""
        walked = ScriptDirectory.from_config(self.config()).walk_revisions()
        return [script.revision for script in reversed(list(walked))]


def add_missing_columns(conn: Connection, table: Table, names: Sequence[str]) -> None:
    """``ALTER TABLE ... ADD COLUMN`` for those of ``names`` the table lacks (a ``NOT NULL``
    column needs a ``server_default`` for the rows already there)."""
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


def complete_schema(op: Operations, snapshot: MetaData) -> None:
    """Bring a database to ``snapshot`` by adding only: the tables it lacks (with their indexes)
    and the columns its tables lack. A database made by the migration lists that came before
    Alembic holds a subset of the schema of that time, so this takes any of them (or an empty
    one) to it; the list's own ``schema_migrations`` table is dropped."""
    conn = op.get_bind()
    snapshot.create_all(conn, checkfirst=True)
    for table in snapshot.sorted_tables:
        present = {c["name"] for c in inspect(conn).get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:  # a NOT NULL one has a server default for old rows
                op.add_column(table.name, column._copy())
        for index in table.indexes:
            index.create(conn, checkfirst=True)
    if inspect(conn).has_table("schema_migrations"):
        conn.execute(text("DROP TABLE schema_migrations"))


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision a database is at (None: never migrated by Alembic)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


MIGRATION_LOCK_KEY = 0x5E1FCA4E  # pg_advisory_lock key: one migrator per database at a time


def migrate(engine: Engine, scripts: MigrationScripts, *, to: str = "head") -> list[str]:
    """Upgrade the database to ``to`` (the newest revision by default); returns the revisions
    applied, oldest first (empty when it was there already).

    On PostgreSQL the whole run holds an advisory lock, so that several workers starting together
    on one database do not race to create the same tables."""
    with _ALEMBIC:
        return _migrate_locked(engine, scripts, to)


# Alembic's ``context`` and ``op`` are module-wide proxies: one upgrade at a time per process
_ALEMBIC = threading.Lock()


def _migrate_locked(engine: Engine, scripts: MigrationScripts, to: str) -> list[str]:
    if engine.dialect.name != "postgresql":
        return _upgrade(engine, scripts, to)
    with engine.connect() as lock:
        lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        try:
            return _upgrade(engine, scripts, to)
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            lock.commit()


def _upgrade(engine: Engine, scripts: MigrationScripts, to: str) -> list[str]:
    before = current_revision(engine)
    with engine.begin() as conn:
        command.upgrade(scripts.config(conn), to)
    after = current_revision(engine)
    if after == before:
        return []
    directory = ScriptDirectory.from_config(scripts.config())
    applied = [s.revision for s in directory.iterate_revisions(after, before or "base")
               if s.revision != before]
    for revision in reversed(applied):
        log.info("migration applied", extra={"revision": revision})
    return list(reversed(applied))


def run_migrations(target_metadata: MetaData | Sequence[MetaData]) -> None:
    """The body of every service's ``migrations/env.py``: online migrations on the connection
    :func:`migrate` hands over (SQLite's ``ALTER`` limits handled by batch mode)."""
    from alembic import context

    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("migrations run through services.common.db.migrate "
                           "(python -m services.<name> migrate)")
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def compare_with_models(engine: Engine, target_metadata: MetaData | Sequence[MetaData]) -> list[Any]:
    """Alembic autogenerate's differences between a database and the models (empty: they agree)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "target_metadata": target_metadata})
        return list(compare_metadata(context, target_metadata))  # type: ignore[arg-type]
