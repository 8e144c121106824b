"""``insert_rows`` and ``insert_columns_returning_ids`` write every column type the services use
exactly as given, on SQLite and PostgreSQL. On PostgreSQL a table whose columns all have a binary
form goes through a binary ``COPY`` (``_copy_types``); one with a column that has none (a
numeric) goes through ``INSERT … SELECT * FROM unnest``. Both ways must read back the same."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    Uuid,
    create_engine,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from services.common.db import (
    Database,
    _copy_types,
    insert_columns_returning_ids,
    insert_rows,
    is_postgres,
    is_transient,
)
from services.registration.adapters.tables import UtcDateTime

metadata = MetaData()
every_type = Table(
    "every_type", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("uid", Uuid, nullable=False, unique=True),
    Column("name", String(40), nullable=False),
    Column("note", Text, nullable=True),
    Column("flag", Boolean, nullable=False),
    Column("small", SmallInteger, nullable=False),
    Column("count", Integer, nullable=False),
    Column("big", BigInteger, nullable=False),
    Column("blob", LargeBinary, nullable=True),
    Column("doc", JSON, nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Column("naive", DateTime(timezone=False), nullable=True),
)
with_float = Table(
    "with_float", metadata,
    Column("name", String(40), primary_key=True),
    Column("score", Float, nullable=False),  # double precision on PostgreSQL
    Column("low", Float(precision=24), nullable=True),  # real
    Column("amount", Numeric(12, 2), nullable=True),
)

WHEN = datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC)


def rows(n: int) -> list[dict[str, object]]:
    return [{
        "uid": uuid.uuid4(),
        "name": f"имя-{i}\t'\"\\,",  # non-ASCII, a tab, quotes, a backslash, a comma
        "note": None if i % 2 else "x" * 3000,
        "flag": i % 3 == 0,
        "small": -32768 if i == 0 else i,
        "count": 2**31 - 1 - i,
        "big": 2**62 + i,
        "blob": None if i % 4 == 1 else bytes(range(256)) * 4,
        "doc": None if i % 5 == 2 else {"i": i, "list": [1, "two", None], "ключ": True},
        "at": WHEN + timedelta(microseconds=i),
        "naive": None if i % 2 else datetime(2026, 1, 1, 12) + timedelta(hours=i),
    } for i in range(n)]


def test_copy_types_name_a_binary_form_for_every_column_or_none() -> None:
    names = tuple(c.name for c in every_type.columns)
    assert _copy_types(every_type, names) == (
        "int8", "uuid", "text", "text", "bool", "int2", "int4", "int8", "bytea", "text",
        "timestamptz", "timestamp")
    assert _copy_types(with_float, ("name", "score", "low")) == ("text", "float8", "float4")
    assert _copy_types(with_float, ("name", "amount")) is None  # no binary form given here


async def test_insert_rows_round_trips_every_column_type(database_url: str) -> None:
    db = Database(url=database_url, name="insert-rows")
    metadata.create_all(db.engine)
    given = rows(37)

    def write(session: Session) -> None:
        insert_rows(session, every_type, given)
        insert_rows(session, with_float, [  # through the COPY on PostgreSQL
            {"name": f"n{i}", "score": i / 7, "low": 0.5 * i} for i in range(5)])
        insert_rows(session, with_float, [  # a numeric: through unnest
            {"name": f"m{i}", "score": -i / 3, "amount": Decimal(f"{i}.25")} for i in range(3)])
        insert_rows(session, every_type, [])  # nothing to write: no statement

    def read(session: Session) -> tuple[list[dict[str, object]], list[tuple[object, ...]]]:
        got = [dict(r._mapping) for r in session.execute(
            select(every_type).order_by(every_type.c.count.desc()))]
        floats = [tuple(r) for r in session.execute(select(with_float).order_by(with_float.c.name))]
        # (name, score, low, amount)
        return got, floats

    try:
        await db.run(write)
        got, floats = await db.run(read)
    finally:
        db.close()
    assert [{k: v for k, v in r.items() if k != "id"} for r in got] == given
    assert len({r["id"] for r in got}) == len(given)
    assert floats == ([(f"m{i}", -i / 3, None, Decimal(f"{i}.25")) for i in range(3)]
                      + [(f"n{i}", i / 7, 0.5 * i, None) for i in range(5)])


async def test_a_row_that_breaks_a_constraint_fails_the_whole_insert(database_url: str) -> None:
    db = Database(url=database_url, name="insert-rows")
    metadata.create_all(db.engine)
    given = rows(3)
    given[2]["uid"] = given[0]["uid"]  # unique

    def write(session: Session) -> None:
        insert_rows(session, every_type, given)

    try:
        with pytest.raises(IntegrityError):
            await db.run(write)
        assert await db.run(lambda s: s.query(every_type).count()) == 0
    finally:
        db.close()


async def test_returning_ids_in_the_order_of_the_rows(postgres_url: str) -> None:
    db = Database(url=postgres_url, name="insert-rows")
    metadata.create_all(db.engine)
    given = rows(20)
    columns = {name: [r[name] for r in given] for name in given[0]}

    def write(session: Session) -> list[int]:
        assert is_postgres(session)
        return insert_columns_returning_ids(session, every_type, columns)

    try:
        ids = await db.run(write)
        by_id: dict[int, uuid.UUID] = {row.id: row.uid for row in await db.run(
            lambda s: s.execute(select(every_type.c.id, every_type.c.uid)).all())}
    finally:
        db.close()
    assert [by_id[i] for i in ids] == [r["uid"] for r in given]


async def test_a_connection_lost_during_the_copy_is_a_transient_error(
        postgres_url: str) -> None:
    """The ``COPY`` runs on the driver's connection, outside SQLAlchemy's execute: a lost
    connection is still a transient error, and the pool does not hand it out again."""
    db = Database(url=postgres_url, name="insert-rows")
    metadata.create_all(db.engine)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")

    def write(session: Session) -> None:
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        insert_rows(session, every_type, rows(3))

    try:
        with pytest.raises(DBAPIError) as caught:
            await db.run(write)
        assert is_transient(caught.value), type(caught.value)
        assert caught.value.connection_invalidated
        # the pool hands out a working connection afterwards, and the rows were not written
        await db.run(lambda s: insert_rows(s, every_type, rows(2)))
        assert await db.run(lambda s: s.query(every_type).count()) == 2
    finally:
        db.close()
        admin.dispose()


async def test_a_read_only_database_during_the_copy_is_a_transient_error(
        postgres_url: str) -> None:
    """A writer address still on a demoted primary refuses writes (SQLSTATE 25006) on a live
    connection: the batch is retried, so the ``COPY``'s error must reach ``is_transient`` as
    SQLAlchemy's ``DBAPIError`` with the driver's SQLSTATE."""
    db = Database(url=postgres_url, name="insert-rows")
    metadata.create_all(db.engine)

    def write(session: Session) -> None:
        session.execute(text("SET TRANSACTION READ ONLY"))
        insert_rows(session, every_type, rows(3))

    try:
        with pytest.raises(DBAPIError) as caught:
            await db.run(write)
        assert getattr(caught.value.orig, "sqlstate", None) == "25006"
        assert is_transient(caught.value)
        assert not caught.value.connection_invalidated
    finally:
        db.close()


async def test_a_value_of_the_wrong_type_is_a_programming_error_and_nothing_is_written(
        postgres_url: str) -> None:
    """A float in an integer column: psycopg's binary dumper refuses it in the ``COPY`` as a
    ``TypeError`` (PostgreSQL cast the array before). It is not a database error, so
    ``is_transient`` does not retry it: the runner redoes the batch record by record and
    dead-letters the one that fails. The connection stays usable."""
    db = Database(url=postgres_url, name="insert-rows")
    metadata.create_all(db.engine)
    given = rows(3)
    given[1]["count"] = 1.5

    try:
        with pytest.raises(TypeError) as caught:
            await db.run(lambda s: insert_rows(s, every_type, given))
        assert not is_transient(caught.value)
        assert await db.run(lambda s: s.query(every_type).count()) == 0
        await db.run(lambda s: insert_rows(s, every_type, rows(2)))
        assert await db.run(lambda s: s.query(every_type).count()) == 2
    finally:
        db.close()
