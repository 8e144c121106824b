"""``is_transient``: which database errors make the consumer loop retry the batch (the database away,
busy or failing over) rather than dead-letter its records one by one. PostgreSQL says which by
its SQLSTATE, and psycopg raises some of those as other classes than ``OperationalError``: a
read-only transaction (25006, a writer address still on a demoted primary) is an
``InternalError``, a serialization failure a ``TransactionRollbackError``."""

from __future__ import annotations

import asyncio
import json
import uuid

import psycopg
import pytest
from psycopg import errors as pg
from sqlalchemy import Column, MetaData, String, Table, create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, InternalError, ProgrammingError

from schemas.events import ContractTerminated
from services.common.consumer_loop import BatchRunner, Inbound, RawRecord
from services.common.db import Database, is_transient
from services.common.metrics import ServiceMetrics
from tests.support.doubles import Relay, Sent


def wrapped(orig: Exception) -> DBAPIError:
    """``orig`` as SQLAlchemy raises it: its DBAPI class mapped to SQLAlchemy's."""
    error = DBAPIError.instance("INSERT …", {}, orig, psycopg.Error)
    assert isinstance(error, DBAPIError)
    return error


@pytest.mark.parametrize("orig", [
    pg.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),  # 25006
    pg.SerializationFailure("could not serialize access"),  # 40001
    pg.DeadlockDetected("deadlock detected"),  # 40P01
    pg.AdminShutdown("terminating connection due to administrator command"),  # 57P01
    pg.CannotConnectNow("the database system is starting up"),  # 57P03
    pg.TooManyConnections("too many clients already"),  # 53300
    pg.DiskFull("could not extend file"),  # 53100
    pg.ConnectionFailure("connection failure"),  # 08006
], ids=lambda e: type(e).__name__)
def test_a_database_away_busy_or_failing_over_is_transient(orig: Exception) -> None:
    assert is_transient(wrapped(orig))


@pytest.mark.parametrize("orig", [
    pg.UniqueViolation("duplicate key value"),  # 23505
    pg.NotNullViolation("null value"),  # 23502
    pg.UndefinedTable("relation does not exist"),  # 42P01
    pg.InvalidTextRepresentation("invalid input syntax"),  # 22P02
    pg.InternalError_("an internal error"),  # XX000
], ids=lambda e: type(e).__name__)
def test_an_error_of_the_work_itself_is_not(orig: Exception) -> None:
    assert not is_transient(wrapped(orig))
    assert not is_transient(ValueError("not a database error"))


def test_the_read_only_error_is_an_internal_error_not_an_operational_one() -> None:
    """Why the SQLSTATE is read: the class alone says nothing of a failover."""
    error = wrapped(pg.ReadOnlySqlTransaction("read-only"))
    assert isinstance(error, InternalError)
    assert not isinstance(wrapped(pg.UniqueViolation("dup")), InternalError)
    assert isinstance(wrapped(pg.UniqueViolation("dup")), IntegrityError)
    assert isinstance(wrapped(pg.UndefinedTable("x")), ProgrammingError)


async def test_a_read_only_database_is_transient(postgres_url: str) -> None:
    """The error as PostgreSQL and psycopg give it."""
    db = Database(url=postgres_url, name="t")
    try:
        def write_read_only(session: object) -> None:
            conn = session.connection()  # type: ignore[attr-defined]
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            conn.exec_driver_sql("CREATE TABLE t (x int)")

        with pytest.raises(DBAPIError) as caught:
            await db.run(write_read_only)  # type: ignore[arg-type]
        assert getattr(caught.value.orig, "sqlstate", None) == "25006"
        assert is_transient(caught.value)
    finally:
        db.close()


def event(n: int) -> RawRecord:
    value = json.dumps({"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:30:00Z",
                        "contract_number": f"77-{n}"}).encode()
    return RawRecord(topic="in", partition=0, offset=n, key=None, value=value, headers=[])


async def test_a_batch_written_while_the_database_is_read_only_is_retried_not_dead_lettered(
        postgres_url: str) -> None:
    """A failover: the database refuses writes for 2 s, then takes them; the batch waits."""
    metadata = MetaData()
    seen = Table("seen", metadata, Column("contract", String(36), primary_key=True))
    db = Database(url=postgres_url, name="t")
    metadata.create_all(db.engine)
    name = postgres_url.rsplit("/", 1)[1]
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")

    def read_only(on: bool) -> None:
        with admin.connect() as conn:
            conn.execute(text(
                f'ALTER DATABASE "{name}" SET default_transaction_read_only = {"on" if on else "off"}'))
        db.engine.dispose()  # new sessions take the setting

    async def handler(items: list[Inbound[ContractTerminated]]) -> None:
        await db.run(lambda s: s.execute(
            seen.insert(), [{"contract": i.event.contract_number} for i in items]))

    sent = Sent()
    runner = BatchRunner(service="t", topic="in", model=ContractTerminated, handler=handler,
                         publisher=sent, relay=Relay(), metrics=ServiceMetrics("t"),  # type: ignore[arg-type]
                         max_record_bytes=10_000, retry_initial_s=0.2)
    try:
        read_only(True)
        task = asyncio.ensure_future(runner.process([event(1), event(2), event(3)]))
        await asyncio.sleep(2)
        assert not task.done()  # waiting, not dead-lettering
        read_only(False)
        await asyncio.wait_for(task, 30)
        written = await db.run(lambda s: sorted(s.scalars(text("SELECT contract FROM seen"))))
    finally:
        db.close()
        admin.dispose()
    assert sent.records == []
    assert written == ["77-1", "77-2", "77-3"]
