"""The subscriber's lifecycle on SQLite and PostgreSQL: epochs on re-link and reopen, refused
event times, erasure, retention."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from schemas.events import ContractErased, ContractLinked, ContractTerminated
from schemas.topics import ACCOUNT_CHANGED, CONTRACT_REJECTED
from services.common.db import Database, Staged
from services.common.retention import DAY_S, Pruner
from services.registration.adapters.protection import KeyringProtector
from services.registration.adapters.repository import SqlUnitOfWork
from services.registration.adapters.support_repository import SqlSupportRepository
from services.registration.adapters.support_tables import window_slots, windows
from services.registration.adapters.tables import accounts, erasures, outbox, processed_events, prunable
from services.registration.domain.model import Outcome
from services.registration.entrypoints.agents import to_erasure, to_link, to_termination
from services.registration.service_layer.erase_contract import erase_contracts
from services.registration.service_layer.link_contract import link_contracts
from services.registration.service_layer.terminate_contract import terminate_contracts
from tests.registration.events import erased, linked, not_after, terminated

FAR_FUTURE = "9999-12-31T23:59:59Z"
T = TypeVar("T")


class Store:
    def __init__(self, db: Database, protector: KeyringProtector) -> None:
        self.db = db
        self.handed: list[Staged] = []  # as the relay is handed them
        self.uow = SqlUnitOfWork(db=db, hand_over=self.handed.extend)
        self.protector = protector

    async def link(self, *events: dict[str, Any]) -> dict[Outcome, int]:
        commands = [to_link(ContractLinked.model_validate_json(json.dumps(e))) for e in events]
        return dict(await link_contracts(commands, uow=self.uow, protector=self.protector,
                                         not_after=not_after()))

    async def terminate(self, *events: dict[str, Any]) -> dict[Outcome, int]:
        commands = [to_termination(ContractTerminated.model_validate_json(json.dumps(e)))
                    for e in events]
        return dict(await terminate_contracts(commands, uow=self.uow, protector=self.protector,
                                              not_after=not_after()))

    async def erase(self, *events: dict[str, Any]) -> dict[Outcome, int]:
        commands = [to_erasure(ContractErased.model_validate_json(json.dumps(e))) for e in events]
        return dict(await erase_contracts(commands, uow=self.uow, protector=self.protector,
                                          not_after=not_after()))

    def row(self, number: str) -> Any:
        with self.db.engine.connect() as conn:
            return conn.execute(select(accounts).where(accounts.c.contract_number == number)).first()

    def published(self, topic: str) -> list[tuple[bytes | None, dict[str, Any] | None]]:
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(outbox).where(outbox.c.topic == topic).order_by(outbox.c.id))
            return [(r.key, None if r.value is None else json.loads(r.value)) for r in rows]

    def count(self, table: Any) -> int:
        with self.db.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def epochs(store: Store, number: str) -> tuple[int, int]:
    row = store.row(number)
    return row.holder_epoch, row.contacts_epoch


async def test_a_holder_change_raises_the_holder_epoch_and_contacts_the_contacts_epoch(
    db: Database, protector: KeyringProtector
) -> None:
    store = Store(db, protector)
    await store.link(linked("L-1", minutes=0))
    assert epochs(store, "L-1") == (0, 0)
    # same content again: nothing changes
    assert await store.link(linked("L-1", minutes=1)) == {Outcome.UNCHANGED: 1}
    assert epochs(store, "L-1") == (0, 0)
    # only contacts: pending codes voided downstream
    assert await store.link(linked("L-1", minutes=2, email="petrov@example.ru")) == {Outcome.UPDATED: 1}
    assert epochs(store, "L-1") == (0, 1)
    # the product or mobile_active alone is neither holder nor contacts
    await store.link(linked("L-1", minutes=3, email="petrov@example.ru", mobile_active=False))
    assert epochs(store, "L-1") == (0, 1)
    # another passport: a new holder
    await store.link(linked("L-1", minutes=4, email="petrov@example.ru", passport=("4511", "654321")))
    assert epochs(store, "L-1") == (1, 1)
    # the same passport under another name: a new holder too; letter case alone is not
    await store.link(linked("L-1", minutes=5, email="petrov@example.ru", passport=("4511", "654321"),
                            name="Петров Пётр Петрович"))
    assert epochs(store, "L-1") == (2, 1)
    await store.link(linked("L-1", minutes=6, email="petrov@example.ru", passport=("4511", "654321"),
                            name="ПЕТРОВ ПЁТР ПЕТРОВИЧ"))
    assert epochs(store, "L-1") == (2, 1)
    last = store.published(ACCOUNT_CHANGED)[-1][1]
    assert last is not None and (last["holder_epoch"], last["contacts_epoch"]) == (2, 1)


async def test_a_reopen_after_termination_raises_the_holder_epoch(
    db: Database, protector: KeyringProtector
) -> None:
    store = Store(db, protector)
    await store.link(linked("R-1", minutes=0))
    await store.terminate(terminated("R-1", minutes=10))
    assert epochs(store, "R-1") == (0, 0)
    assert await store.link(linked("R-1", minutes=20)) == {Outcome.REOPENED: 1}  # same holder
    assert epochs(store, "R-1") == (1, 0)
    last = store.published(ACCOUNT_CHANGED)[-1][1]
    assert last is not None and last["status"] == "active" and last["holder_epoch"] == 1


async def test_a_far_future_link_is_refused_and_a_later_real_relink_still_works(
    db: Database, protector: KeyringProtector
) -> None:
    store = Store(db, protector)
    await store.link(linked("T-1", minutes=0))
    future = {**linked("T-1", mobile="+7 903 000-00-09"), "occurred_at": FAR_FUTURE}
    assert await store.link(future) == {Outcome.REJECTED: 1}
    [(key, rejected)] = store.published(CONTRACT_REJECTED)
    assert key == b"T-1" and rejected is not None
    assert rejected["reason"] == "invalid_event_time"
    assert rejected["rejected_event_id"] == future["event_id"]
    assert store.row("T-1").last_event_at == datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    # just inside the skew is accepted: the CRM's clock may run a little ahead
    soon = (datetime.now(UTC) + timedelta(seconds=200)).isoformat()
    assert await store.link({**linked("T-1", mobile="+7 903 000-00-08"), "occurred_at": soon}) == {
        Outcome.UPDATED: 1}
    assert store.row("T-1").mobile_masked == "+7******0008"
    # a future link of a new contract opens nothing; a termination is refused too (an erasure is
    # carried out: test_an_erasure_dated_far_ahead_is_carried_out_at_the_skew_limit)
    assert await store.link({**linked("T-2", mobile="+7 903 000-00-07"), "occurred_at": FAR_FUTURE}) == {
        Outcome.REJECTED: 1}
    assert store.row("T-2") is None
    assert await store.terminate({**terminated("T-1"), "occurred_at": FAR_FUTURE}) == {
        Outcome.REJECTED: 1}
    assert store.row("T-1").status == "active"
    assert [r["reason"] for _, r in store.published(CONTRACT_REJECTED) if r] == [
        "invalid_event_time"] * 3


async def test_an_erasure_dated_far_ahead_is_carried_out_at_the_skew_limit(
    db: Database, protector: KeyringProtector, caplog: pytest.LogCaptureFixture
) -> None:
    """The subscriber's right does not wait for the CRM's clock: the data goes now, and the
    marker stands at the skew limit, not in 9999, so a real re-link after it opens an account."""
    store = Store(db, protector)
    await store.link(linked("F-1", minutes=0))
    account_id = store.row("F-1").account_id
    limit = datetime(2026, 12, 1, tzinfo=UTC)  # now + MAX_CLOCK_SKEW_S, as the handler gives it
    event = {**erased("F-1"), "occurred_at": FAR_FUTURE}
    commands = [to_erasure(ContractErased.model_validate_json(json.dumps(event)))]
    with caplog.at_level(logging.WARNING):
        assert await erase_contracts(commands, uow=store.uow, protector=protector,
                                     not_after=limit) == {Outcome.ERASED: 1}
    assert store.row("F-1") is None
    assert [(k, v) for k, v in store.published(ACCOUNT_CHANGED) if v is None] == [
        (str(account_id).encode(), None)]
    assert store.published(CONTRACT_REJECTED) == []
    assert [getattr(r, "event_id", None) for r in caplog.records
            if r.levelno == logging.WARNING] == [event["event_id"]]
    with db.engine.connect() as conn:
        [marker] = conn.execute(select(erasures)).all()
    assert marker.erased_at == limit
    before, after = ({**linked("F-1"), "occurred_at": at}
                     for at in ("2026-11-30T23:59:00Z", "2026-12-01T00:01:00Z"))
    assert await store.link(before) == {Outcome.STALE: 1}
    assert await store.link(after) == {Outcome.CREATED: 1}
    assert store.row("F-1").account_id != account_id


class RolledBackOnce:
    """The unit of work whose first transaction does the work and then loses the database."""

    def __init__(self, inner: SqlUnitOfWork) -> None:
        self.inner = inner
        self.attempts = 0

    async def run(self, work: Callable[[Any], T]) -> T:
        self.attempts += 1
        if self.attempts == 1:
            def then_lost(repo: Any) -> T:
                work(repo)
                raise OperationalError(None, None, ConnectionError("the database went away"))
            return await self.inner.run(then_lost)
        return await self.inner.run(work)


async def test_an_erasure_dated_ahead_is_logged_once_whatever_is_redone(
    db: Database, protector: KeyringProtector, caplog: pytest.LogCaptureFixture
) -> None:
    """The line names an erasure that was carried out: not an attempt the database rolled back,
    and not a redelivery of one already done."""
    store = Store(db, protector)
    await store.link(linked("F-2", minutes=0))
    limit = datetime(2026, 12, 1, tzinfo=UTC)
    event = {**erased("F-2"), "occurred_at": FAR_FUTURE}
    commands = [to_erasure(ContractErased.model_validate_json(json.dumps(event)))]
    uow = RolledBackOnce(store.uow)
    with caplog.at_level(logging.WARNING):
        with pytest.raises(OperationalError):
            await erase_contracts(commands, uow=uow, protector=protector, not_after=limit)
        assert store.row("F-2") is not None  # rolled back
        assert [r for r in caplog.records if r.levelno == logging.WARNING] == []
        assert await erase_contracts(commands, uow=uow, protector=protector,
                                     not_after=limit) == {Outcome.ERASED: 1}
        assert await erase_contracts(commands, uow=uow, protector=protector,
                                     not_after=limit) == {Outcome.DUPLICATE: 1}
    assert store.row("F-2") is None
    assert [getattr(r, "event_id", None) for r in caplog.records
            if r.levelno == logging.WARNING] == [event["event_id"]]


async def test_erasure_deletes_the_account_tombstones_it_and_keeps_only_a_marker(
    db: Database, protector: KeyringProtector
) -> None:
    store = Store(db, protector)
    await store.link(linked("E-1", minutes=0), linked("E-2", minutes=0, mobile="+7 903 111-22-33",
                                                      account="555000111"))
    account_id = store.row("E-1").account_id
    kept_id = store.row("E-2").account_id
    for subject in (account_id, kept_id):  # support's identity checks, counted per account
        db.run_sync(lambda s, subject=subject: SqlSupportRepository(s).take_attempts(
            [str(subject)], max_events=5, window_s=3600, now=time.time()))
    event = erased("E-1", minutes=30)
    assert await store.erase(event) == {Outcome.ERASED: 1}
    assert store.row("E-1") is None and store.row("E-2") is not None
    with db.engine.connect() as conn:
        for table in (windows, window_slots):
            assert conn.execute(select(table.c.subject)).scalars().all() == [str(kept_id)]
    tombstones = [(k, v) for k, v in store.published(ACCOUNT_CHANGED) if v is None]
    assert tombstones == [(str(account_id).encode(), None)]
    with db.engine.connect() as conn:
        [marker] = conn.execute(select(erasures)).all()
    assert marker.contract_number == "E-1" and marker.account_id == account_id
    assert marker.erased_at == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    # idempotent: the same event, and another erasure, change nothing and publish nothing
    assert await store.erase(event) == {Outcome.DUPLICATE: 1}
    assert await store.erase(erased("E-1", minutes=40)) == {Outcome.UNCHANGED: 1}
    assert len([v for _, v in store.published(ACCOUNT_CHANGED) if v is None]) == 1
    # a late termination (dated before the erasure, read after it) is no unknown contract: the
    # contract was linked, and nothing is kept to close (no rejection for the CRM to resend)
    assert await store.terminate(terminated("E-1", minutes=10)) == {Outcome.UNCHANGED: 1}
    assert store.published(CONTRACT_REJECTED) == []
    # a late link older than the erasure brings nothing back
    assert await store.link(linked("E-1", minutes=20)) == {Outcome.STALE: 1}
    assert store.row("E-1") is None
    # the erased subscriber's login is free again; a newer link opens a NEW account
    assert await store.link(linked("E-3", minutes=50)) == {Outcome.CREATED: 1}
    assert await store.link(linked("E-1", minutes=60, mobile="+7 903 444-55-66")) == {
        Outcome.CREATED: 1}
    assert store.row("E-1").account_id != account_id


async def test_erasure_of_a_contract_never_linked_blocks_its_older_links(
    db: Database, protector: KeyringProtector
) -> None:
    store = Store(db, protector)
    assert await store.erase(erased("N-1", minutes=30)) == {Outcome.UNCHANGED: 1}
    assert await store.link(linked("N-1", minutes=10)) == {Outcome.STALE: 1}
    assert store.row("N-1") is None and store.published(ACCOUNT_CHANGED) == []


async def test_an_erasure_older_than_the_last_link_still_erases(
    db: Database, protector: KeyringProtector
) -> None:
    store = Store(db, protector)
    await store.link(linked("O-1", minutes=100))
    assert await store.erase(erased("O-1", minutes=50)) == {Outcome.ERASED: 1}
    assert store.row("O-1") is None
    # the marker stands at the newest event seen, so a redelivery of that link stays stale
    assert await store.link(linked("O-1", minutes=100)) == {Outcome.STALE: 1}


async def test_an_erasure_read_again_after_its_id_was_pruned_leaves_a_later_relink_alone(
    db: Database, protector: KeyringProtector
) -> None:
    """Linked, erased, then linked again for a new holder: the first erasure read again once its
    event id is pruned (``RETENTION_DAYS`` below the CRM topics' retention, or an offset reset)
    is not newer than the contract's marker, so it was carried out already."""
    store = Store(db, protector)
    erasure = erased("Z-1", minutes=10)
    await store.link(linked("Z-1", minutes=0))
    assert await store.erase(erasure) == {Outcome.ERASED: 1}
    assert await store.link(linked("Z-1", minutes=60, name="Петров Пётр Петрович",
                                   passport=("4511", "654321"))) == {Outcome.CREATED: 1}
    relinked = store.row("Z-1").account_id
    pruned = PromCounter("rows_pruned_total", "test", ["table"], registry=CollectorRegistry())
    pruner = Pruner(db=db, tables=prunable, retention_days=2, pruned=pruned)
    await pruner.prune(time.time() + 3 * DAY_S)
    assert store.count(processed_events) == 0
    assert await store.erase(erasure) == {Outcome.UNCHANGED: 1}
    assert store.row("Z-1").account_id == relinked
    assert await store.erase(erased("Z-1", minutes=70)) == {Outcome.ERASED: 1}  # a newer one erases
    assert store.row("Z-1") is None


async def test_retention_prunes_processed_events_and_an_old_redelivery_stays_harmless(
    db: Database, protector: KeyringProtector
) -> None:
    store = Store(db, protector)
    first = linked("P-1", minutes=0)
    newer = linked("P-1", minutes=10, mobile="+7 903 777-88-99")
    await store.link(first, newer)
    assert store.count(processed_events) == 2
    pruned = PromCounter("rows_pruned_total", "test", ["table"], registry=CollectorRegistry())
    pruner = Pruner(db=db, tables=prunable, retention_days=30, pruned=pruned, batch=1)
    assert await pruner.prune(time.time()) == 0  # nothing is 30 days old yet
    assert await pruner.prune(time.time() + 31 * DAY_S) == 2  # the clock moved forward
    assert store.count(processed_events) == 0
    assert pruned.labels("processed_events")._value.get() == 2
    # the event ids are forgotten, yet the old link redelivered changes nothing: the account's
    # newest occurred_at wins
    published = len(store.published(ACCOUNT_CHANGED))
    assert await store.link(first) == {Outcome.STALE: 1}
    assert store.row("P-1").mobile_masked == "+7******8899"
    assert len(store.published(ACCOUNT_CHANGED)) == published
