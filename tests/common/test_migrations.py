"""Each service's Alembic migrations, on SQLite and PostgreSQL: an empty database and one made by
the migration lists that came before Alembic reach the newest revision, and the result is what the
models (the tables modules) say, by Alembic autogenerate's comparison."""

from __future__ import annotations

import importlib
import math
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, String, Table, inspect, select, text
from sqlalchemy.orm import Session

from schemas.topics import SERVICES
from services.common.db import make_engine
from services.common.migrations import (
    MigrationScripts,
    compare_with_models,
    current_revision,
    migrate,
)

# What the first step of each home-made list created lacked, against today's models: the tables
# and columns later steps added (registration 2 and 18, recovery 2, 3 and 18, notifier 2).
FIRST_STEP_LACKED: dict[str, tuple[set[str], dict[str, set[str]]]] = {
    "registration": ({"erasures", "identify_attempts"},
                     {"accounts": {"holder_hash", "contacts_hash", "holder_epoch", "contacts_epoch",
                                   "personal_account_enc"}}),
    "recovery": ({"counters", "request_log"},
                 {"codes": {"locale"}, "accounts": {"holder_epoch", "contacts_epoch"}}),
    "notifier": ({"notifier_workers"},
                 {"deliveries": {"kind", "status_code_id", "gateway", "leased_by",
                                 "destination_prefix"}}),
}
LIST_VERSIONS = {"registration": [1, 2, 18], "recovery": [1, 2, 3, 18], "notifier": [1, 2]}
# columns and tables that later Alembic revisions added: no home-made list ever made them
AFTER_THE_LISTS: dict[str, dict[str, set[str]]] = {"recovery": {"login_failures": {"touched_at",
                                                                               "login"}},
                                                  "notifier": {"deliveries": {"skipped"}},
                                                  "registration": {"accounts": {"alias_key"}}}
TABLES_AFTER_THE_LISTS: dict[str, set[str]] = {"recovery": {"windows", "window_slots"},
                                              "registration": {"windows", "window_slots", "backfills"},
                                              "notifier": {"early_reports"}}


def tables_of(service: str) -> ModuleType:
    return importlib.import_module(f"services.{service}.adapters.tables")


def home_made(engine: Engine, service: str, versions: list[int]) -> None:
    """A database as the home-made list left it after ``versions`` (only its first step, or all)."""
    old = MetaData()
    lacked_tables, lacked_columns = FIRST_STEP_LACKED[service] if versions == [1] else (set(), {})
    for model in tables_of(service).MODELS:
        for table in model.sorted_tables:
            if table.name in lacked_tables | TABLES_AFTER_THE_LISTS.get(service, set()):
                continue
            never = AFTER_THE_LISTS.get(service, {}).get(table.name, set())
            columns = [c._copy() for c in table.columns
                       if c.name not in lacked_columns.get(table.name, set()) | never]
            if table.name == "outbox" and versions == [1]:  # before tombstones
                for column in columns:
                    column.nullable = column.nullable and column.name != "value"
            Table(table.name, old, *columns)
    listed = Table("schema_migrations", old, Column("version", Integer, primary_key=True),
                   Column("name", String(200), nullable=False),
                   Column("applied_at", DateTime(timezone=True), nullable=False))
    with engine.begin() as conn:
        old.create_all(conn)
        for version in versions:
            conn.execute(listed.insert().values(version=version, name=f"step {version}",
                                                applied_at=datetime.now(UTC)))
        conn.execute(old.tables["processed_events"].insert().values(
            event_id="e-1", processed_at=datetime.now(UTC)))


def assert_at_head(engine: Engine, service: str) -> None:
    tables = tables_of(service)
    assert current_revision(engine) == tables.MIGRATIONS.head()
    assert compare_with_models(engine, tables.MODELS) == []
    assert not inspect(engine).has_table("schema_migrations")
    outbox = tables.outbox
    with engine.begin() as conn:  # the outbox takes tombstones
        conn.execute(outbox.insert().values(topic="t", key=b"k", value=None, headers=[]))


@pytest.mark.parametrize("service", SERVICES)
def test_an_empty_database_is_upgraded_to_the_models(database_url: str, service: str) -> None:
    engine = make_engine(database_url)
    try:
        tables = tables_of(service)
        assert migrate(engine, tables.MIGRATIONS) == tables.MIGRATIONS.revisions()
        assert_at_head(engine, service)
        assert migrate(engine, tables.MIGRATIONS) == []  # a second start changes nothing
    finally:
        engine.dispose()


@pytest.mark.parametrize("steps", ["first step", "every step"])
@pytest.mark.parametrize("service", SERVICES)
def test_a_database_of_the_home_made_list_is_upgraded_and_keeps_its_rows(
        database_url: str, service: str, steps: str) -> None:
    engine = make_engine(database_url)
    try:
        home_made(engine, service, [1] if steps == "first step" else LIST_VERSIONS[service])
        tables = tables_of(service)
        assert migrate(engine, tables.MIGRATIONS) == tables.MIGRATIONS.revisions()
        assert_at_head(engine, service)
        with engine.connect() as conn:
            kept = conn.execute(select(tables.processed_events.c.event_id)).scalars().all()
        assert kept == ["e-1"]
    finally:
        engine.dispose()


def test_the_comparison_sees_a_schema_that_differs_from_the_models(database_url: str) -> None:
    """The agreement check can fail: a column the models have and the database lacks is listed."""
    engine = make_engine(database_url)
    try:
        tables = tables_of("notifier")
        migrate(engine, tables.MIGRATIONS)
        extra = MetaData()
        for table in tables.metadata.sorted_tables:
            table.to_metadata(extra)
        Table("deliveries", extra, Column("surplus", Integer), extend_existing=True)
        diff = compare_with_models(engine, extra)
        assert [d[0] for d in diff] == ["add_column"]
        assert diff[0][3].name == "surplus"
    finally:
        engine.dispose()


def test_login_failure_counts_at_the_previous_revision_are_kept_and_stamped(database_url: str) -> None:
    """Recovery 0001 → 0002: the counts stay and get the upgrade's time, from which they age out."""
    engine = make_engine(database_url)
    try:
        tables = tables_of("recovery")
        assert migrate(engine, tables.MIGRATIONS, to="0001") == ["0001"]
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO login_failures (subject, failures, locked_until) "
                              "VALUES ('s1', 3, NULL), ('s2', 5, 12.5)"))
        started = time.time()
        assert migrate(engine, tables.MIGRATIONS) == ["0002", "0003", "0004"]
        assert_at_head(engine, "recovery")
        failures = tables.login_failures.c
        with engine.connect() as conn:
            rows = conn.execute(select(failures.subject, failures.failures, failures.locked_until,
                                       failures.touched_at).order_by(failures.subject)).all()
        assert [(r.subject, r.failures, r.locked_until) for r in rows] == [("s1", 3, None),
                                                                           ("s2", 5, 12.5)]
        assert all(started - 1 <= r.touched_at <= time.time() + 1 for r in rows)
    finally:
        engine.dispose()


def test_fixed_windows_at_the_previous_revision_are_carried_over_as_they_stood(
        database_url: str) -> None:
    """Recovery 0002 → 0003: a fixed window still running keeps its count until it would have
    ended — full, it refuses until then; half full, the rest fits — and an ended one is free."""
    from services.recovery.adapters import repository
    from services.recovery.domain.model import Window

    engine = make_engine(database_url)
    try:
        tables = tables_of("recovery")
        assert migrate(engine, tables.MIGRATIONS, to="0002") == ["0001", "0002"]
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO counters (subject, count, window_end) VALUES "
                              "('full', 3, 1500.0), ('half', 1, 1500.0), ('ended', 3, 900.0)"))
        assert migrate(engine, tables.MIGRATIONS) == ["0003", "0004"]
        assert_at_head(engine, "recovery")
        day = Window(max_events=3, window_s=86400)

        def take(subject: str, now: float) -> int | None:
            with Session(engine) as session, session.begin():
                return repository.take(session, subject, day, now)

        assert take("full", 1000.0) == 500
        assert [take("half", 1000.0) for _ in range(3)] == [None, None, 500]
        assert [take("ended", 1000.0) for _ in range(4)] == [None, None, None, 86400]
        assert take("full", 1500.0) is None
    finally:
        engine.dispose()


def test_sliding_windows_go_back_to_fixed_windows_and_up_again(database_url: str) -> None:
    """Recovery 0003 → 0002 (a rollback): each ring becomes a fixed window counting its slots
    and ending when the last leaves; upgraded again, the count still holds."""
    from alembic import command

    from services.recovery.adapters import repository
    from services.recovery.domain.model import Window

    engine = make_engine(database_url)
    try:
        tables = tables_of("recovery")
        migrate(engine, tables.MIGRATIONS)
        window = Window(max_events=3, window_s=100)

        def take(subject: str, now: float) -> int | None:
            with Session(engine) as session, session.begin():
                return repository.take(session, subject, window, now)

        assert [take("s1", 1000.0), take("s1", 1010.0), take("s2", 1000.0)] == [None] * 3
        with engine.begin() as conn:
            command.downgrade(tables.MIGRATIONS.config(conn), "0002")
        assert current_revision(engine) == "0002"
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT subject, count, window_end FROM counters "
                                     "ORDER BY subject")).all()
        assert [tuple(r) for r in rows] == [("s1", 2, 1110.0), ("s2", 1, 1100.0)]
        assert migrate(engine, tables.MIGRATIONS) == ["0003", "0004"]
        assert [take("s1", 1020.0), take("s1", 1020.0)] == [None, 90]
    finally:
        engine.dispose()


def test_identity_checks_at_the_previous_revision_are_carried_over_as_they_stood(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Registration 0002 → 0003: support's identity checks of a fixed window still running stay
    counted until it would have ended (the service's ``SUPPORT_IDENTIFY_WINDOW_S``); an ended
    window's are gone."""
    from services.common.db import take_window

    monkeypatch.setenv("SUPPORT_IDENTIFY_WINDOW_S", "600")
    now = time.time()
    start = now - now % 600
    engine = make_engine(database_url)
    try:
        tables = tables_of("registration")
        assert migrate(engine, tables.MIGRATIONS, to="0002") == ["0001", "0002"]
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO identify_attempts (subject, window_start, attempts) "
                              "VALUES ('full', :s, 3), ('half', :s, 1), ('ended', :e, 3)"),
                         {"s": start, "e": start - 600})
        assert migrate(engine, tables.MIGRATIONS) == ["0003", "0004"]
        assert_at_head(engine, "registration")
        assert not inspect(engine).has_table("identify_attempts")

        def take(subject: str) -> int | None:
            with Session(engine) as session, session.begin():
                return take_window(session, subject, max_events=3, window_s=600, now=now)

        ends_in = math.ceil(start + 600 - now)
        assert take("full") == max(1, ends_in)
        assert [take("half") for _ in range(3)] == [None, None, max(1, ends_in)]
        assert [take("ended") for _ in range(4)] == [None, None, None, 600]
    finally:
        engine.dispose()


def test_identity_checks_of_two_fixed_windows_are_carried_over_into_a_longer_one(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old code kept the previous fixed window's row beside the current one; upgraded with a
    longer ``SUPPORT_IDENTIFY_WINDOW_S`` (3600 → 7200), both are still inside: one ring of the
    subject holds all their checks, the oldest leaving first."""
    from services.common.db import take_window

    now = time.time()
    start = now - now % 3600
    engine = make_engine(database_url)
    try:
        tables = tables_of("registration")
        migrate(engine, tables.MIGRATIONS, to="0002")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO identify_attempts (subject, window_start, attempts) "
                              "VALUES ('acc', :s, 2), ('acc', :p, 3)"),
                         {"s": start, "p": start - 3600})
        monkeypatch.setenv("SUPPORT_IDENTIFY_WINDOW_S", "7200")
        assert migrate(engine, tables.MIGRATIONS) == ["0003", "0004"]
        assert_at_head(engine, "registration")
        with Session(engine) as session, session.begin():
            wait = take_window(session, "acc", max_events=5, window_s=7200, now=now)
        assert wait == max(1, math.ceil(start - 3600 + 7200 - now))  # the previous window's
    finally:
        engine.dispose()


NEXT_RELEASE = """
import sqlalchemy as sa
from alembic import op
revision = "0099"
down_revision = "{head}"
branch_labels = None
depends_on = None
def upgrade():
    op.add_column("deliveries", sa.Column("note", sa.String(16), nullable=True))
def downgrade():
    op.drop_column("deliveries", "note")
"""


def test_a_database_a_later_release_migrated_is_left_as_it_is(
        database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A rolling update's first new pod migrated the database one (adding) revision further:
    a pod of this release that starts meanwhile, or after a roll-back, runs on it as it is."""
    tables = tables_of("notifier")
    later = tmp_path / "later_release"
    shutil.copytree(tables.MIGRATIONS.location, later, ignore=shutil.ignore_patterns("__pycache__"))
    (later / "versions" / "0099_later.py").write_text(
        NEXT_RELEASE.format(head=tables.MIGRATIONS.head()))
    engine = make_engine(database_url)
    try:
        assert migrate(engine, MigrationScripts(later))[-1] == "0099"
        assert migrate(engine, tables.MIGRATIONS) == []
        assert current_revision(engine) == "0099"
        assert "a revision this release does not know" in caplog.text
    finally:
        engine.dispose()


def test_identity_check_windows_go_back_to_fixed_windows_and_up_again(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Registration 0003 → 0002 (a rollback): each subject's checks still inside their window
    become the count of the fixed window running now; upgraded again, the count still holds."""
    from alembic import command

    from services.common.db import take_window

    monkeypatch.setenv("SUPPORT_IDENTIFY_WINDOW_S", "600")
    now = time.time()
    engine = make_engine(database_url)
    try:
        tables = tables_of("registration")
        migrate(engine, tables.MIGRATIONS)

        def take(subject: str, at: float) -> int | None:
            with Session(engine) as session, session.begin():
                return take_window(session, subject, max_events=3, window_s=600, now=at)

        assert [take("s1", now - 10), take("s1", now - 5), take("s2", now - 5)] == [None] * 3
        assert take("gone", now - 700) is None  # left its window before the rollback
        with engine.begin() as conn:
            command.downgrade(tables.MIGRATIONS.config(conn), "0002")
        assert current_revision(engine) == "0002"
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT subject, window_start, attempts FROM identify_attempts "
                                     "ORDER BY subject")).all()
        start = rows[0][1] if rows else None
        assert [(r[0], r[2]) for r in rows] == [("s1", 2), ("s2", 1)]
        assert start is not None and start <= now and start % 600 == 0
        assert migrate(engine, tables.MIGRATIONS) == ["0003", "0004"]
        # the two carried over, until the fixed window ends, leave room for one more
        assert [take("s1", now), take("s1", now)] == [None, max(1, math.ceil(start + 600 - now))]
    finally:
        engine.dispose()
