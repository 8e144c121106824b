"""Schema migrations with Alembic: one migration environment per service
(``services/<name>/migrations``), run by ``migrate`` — from ``python -m services.<name> migrate``
and at the start of a worker in local mode — and compared with the models by
``compare_with_models``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, MetaData, Table, inspect, text
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

# Revisions whose ``upgrade()`` drops or alters an existing table or column, per service. Each
# worker migrates at start, so in a rolling update the first new pod would take away what the
# old pods still use: an upgrade across one of these stops the service first (docs/scaling.md,
# "Upgrades that drop or alter"; tests/common/test_stop_the_world_migrations.py keeps this, the
# revisions and that list in step). New revisions add; they drop a release later.
STOP_THE_WORLD: dict[str, frozenset[str]] = {
    "registration": frozenset({"0003"}),  # drops identify_attempts (now windows, window_slots)
    "recovery": frozenset({"0003"}),  # drops counters (now windows, window_slots)
    "notifier": frozenset(),
}


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
    directory = ScriptDirectory.from_config(scripts.config())
    if before is not None and not _known(directory, before):
        # a later release migrated it (the first pod of a rolling update, or before a roll-back):
        # its revisions only add (those that do not are stopped for, docs/scaling.md), so this
        # release runs on it as it is
        log.warning("the database is at a revision this release does not know; left as it is",
                    extra={"revision": before, "head": directory.get_current_head()})
        return []
    with engine.begin() as conn:
        command.upgrade(scripts.config(conn), to)
    after = current_revision(engine)
    if after == before:
        return []
    applied = [s.revision for s in directory.iterate_revisions(after, before or "base")
               if s.revision != before]
    for revision in reversed(applied):
        log.info("migration applied", extra={"revision": revision})
    return list(reversed(applied))


def _known(directory: ScriptDirectory, revision: str) -> bool:
    try:
        return directory.get_revision(revision) is not None
    except CommandError:  # alembic's ResolutionError: no such revision here
        return False


def run_migrations(target_metadata: MetaData | Sequence[MetaData]) -> None:
    """The body of every service's ``migrations/env.py``: online migrations on the connection
    :func:`migrate` hands over (SQLite's ``ALTER`` limits handled by batch mode)."""
    from alembic import context

    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("migrations run through services.common.migrations.migrate "
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
