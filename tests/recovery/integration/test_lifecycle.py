"""Recovery's side of the subscriber lifecycle on SQLite and PostgreSQL: epochs of a re-link,
erasure (tombstones), retention with the clock moved forward."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schemas.topics import CODE_ISSUED, PASSWORD_CHANGED
from services.common.consumer_loop import RawRecord
from services.common.crypto import Keyring, code_aad
from services.common.db import Database
from services.common.migrations import migrate
from services.common.retention import DAY_S, Pruner, prune_batch
from services.recovery.adapters.repository import reserve
from services.recovery.adapters.support_tables import request_log
from services.recovery.adapters.tables import (
    MIGRATIONS,
    accounts,
    codes,
    credentials,
    login_failures,
    processed_events,
    prunable,
    rate_events,
    window_slots,
    windows,
)
from services.recovery.domain.model import route_key
from tests.recovery.builders import POLICY, mobile_of, request
from tests.recovery.conftest import account_changed
from tests.recovery.integration.harness import Harness, harness


@pytest.fixture
def h(database_url: str, keyring: Keyring) -> Iterator[Harness]:
    made = harness(database_url, keyring, ttl=600)
    yield made
    made.db.close()


async def issue(h: Harness, login: str) -> str:
    before = len(h.staged())
    await h.requests(request(login, client_ip="192.0.2.10"))
    _, issued = h.staged()[before]
    return h.keyring.decrypt(str(issued["password_enc"]),
                             aad=code_aad(str(issued["code_id"]), "password"))


def count(h: Harness, table: Any, *where: Any) -> int:
    return int(h.db.run_sync(
        lambda s: s.execute(select(func.count()).select_from(table).where(*where)).scalar_one()))


async def test_a_new_holder_revokes_the_password_and_pending_codes(h: Harness) -> None:
    acc = account_changed(h.keyring)
    await h.accounts(acc)
    login = mobile_of(h.keyring, acc)
    password = await issue(h, login)
    assert await h.login(login, password) == str(acc.account_id)
    h.clock.advance(61)
    pending = await issue(h, login)
    await h.accounts(acc.model_copy(update={"version": 2, "holder_epoch": 1}))
    assert await h.login(login, password) is None
    assert await h.login(login, pending) is None
    assert count(h, credentials, credentials.c.account_id == str(acc.account_id)) == 0
    # a new code works for the new holder
    h.clock.advance(61)
    fresh = await issue(h, login)
    assert await h.login(login, fresh) == str(acc.account_id)
    # the same epoch again (a newer version for another reason, or a replay) revokes nothing
    await h.accounts(acc.model_copy(update={"version": 3, "holder_epoch": 1}))
    await h.accounts(acc.model_copy(update={"version": 2, "holder_epoch": 1}))
    assert await h.login(login, fresh) == str(acc.account_id)


async def test_new_contacts_void_pending_codes_and_keep_the_password(h: Harness) -> None:
    acc = account_changed(h.keyring)
    await h.accounts(acc)
    login = mobile_of(h.keyring, acc)
    password = await issue(h, login)
    assert await h.login(login, password) == str(acc.account_id)
    h.clock.advance(61)
    pending = await issue(h, login)
    await h.accounts(acc.model_copy(update={"version": 2, "contacts_epoch": 1}))
    assert await h.login(login, pending) is None
    assert await h.login(login, password) == str(acc.account_id)
    assert [c.status for c in h.codes()] == ["active", "voided"]


async def test_a_tombstone_deletes_everything_kept_for_the_account(h: Harness) -> None:
    acc = account_changed(h.keyring, email="ivanov@example.ru")
    other = account_changed(h.keyring)
    login, other_login = mobile_of(h.keyring, acc), mobile_of(h.keyring, other)
    await h.requests(request(login))  # before the link: an unknown login in support's log
    await h.accounts(acc, other)
    password = await issue(h, login)
    await h.requests(request(login))  # within the cool-down: refused, logged for the account
    assert await h.login(login, password) == str(acc.account_id)
    assert await h.login(login, "wrong-pass") is None  # a failure row for the login
    # and counts per login and client address: one locked, one not
    for _ in range(POLICY.lockout_failures):
        assert await h.login(login, "wrong-pass", ip="198.51.100.7") is None
    assert await h.login(login, "wrong-pass", ip="198.51.100.8") is None
    await issue(h, other_login)
    login_subject = h.keyring.keyed_hash("lockout", route_key(h.keyring, login))
    assert count(h, rate_events) > 0
    assert count(h, login_failures, login_failures.c.subject == login_subject) == 1
    assert count(h, login_failures, login_failures.c.login == login_subject) == 3  # "-" and two
    assert count(h, windows) > 0 and count(h, window_slots) > 0
    route = route_key(h.keyring, login)
    logged = h.db.run_sync(lambda s: s.execute(
        select(request_log.c.reason, request_log.c.account_id)
        .where(request_log.c.login_key == route).order_by(request_log.c.id)).all())
    assert [tuple(r) for r in logged] == [("unknown_login", None), (None, str(acc.account_id)),
                                          ("rate_limited", str(acc.account_id))]
    tomb = RawRecord(topic="t", partition=0, offset=9, key=str(acc.account_id).encode(),
                     value=None, headers=[])
    await h.tombstones([tomb])
    await h.tombstones([tomb])  # idempotent
    aid = str(acc.account_id)
    # the account's key is tombstoned on the topics of its codes and notices, once
    assert sorted(h.tombstones_staged()) == [(CODE_ISSUED, aid.encode()), (PASSWORD_CHANGED, aid.encode())]
    assert count(h, accounts, accounts.c.account_id == aid) == 0
    assert count(h, credentials, credentials.c.account_id == aid) == 0
    assert count(h, codes, codes.c.account_id == aid) == 0
    # support's log of the login: the refusals and the requests from before the link too
    assert count(h, request_log, request_log.c.login_key == route) == 0
    assert count(h, request_log, request_log.c.account_id == aid) == 0
    assert count(h, request_log, request_log.c.account_id == str(other.account_id)) == 1
    # the login's lock-out goes, and so do its counts per client address
    assert count(h, login_failures, login_failures.c.subject == login_subject) == 0
    assert count(h, login_failures, login_failures.c.login == login_subject) == 0
    day = h.keyring.keyed_hash("limit", "account-day:" + aid)
    assert count(h, windows, windows.c.subject == day) == 0
    assert count(h, window_slots, window_slots.c.subject == day) == 0
    # left: the other account's rows, and the client address's (a keyed hash of an address)
    subjects = {h.keyring.keyed_hash("limit", s) for s in (
        "ip:192.0.2.10", "account:" + str(other.account_id), f"destination:sms:{other_login}")}
    remaining = h.db.run_sync(lambda s: set(s.scalars(select(rate_events.c.subject))))
    assert remaining <= subjects
    assert count(h, accounts) == 1 and count(h, codes) == 1
    assert await h.login(login, password) is None


async def test_retention_prunes_bookkeeping_once_the_clock_has_moved_on(h: Harness) -> None:
    h.clock.t = time.time()  # processed_events is stamped by the system clock
    acc = account_changed(h.keyring)
    await h.accounts(acc)
    login = mobile_of(h.keyring, acc)
    password = await issue(h, login)
    assert await h.login(login, password) == str(acc.account_id)
    h.clock.advance(61)
    await issue(h, login)
    pruned = PromCounter("rows_pruned_total", "test", ["table"], registry=CollectorRegistry())
    pruner = Pruner(db=h.db, tables=prunable, retention_days=30, pruned=pruned, batch=1)
    # login_failures: the counts the successful login gave back (0 places), idle since
    bookkeeping = (processed_events, codes, rate_events, windows, window_slots, login_failures)
    before = {t.name: count(h, t) for t in bookkeeping}
    assert await pruner.prune(h.clock.now()) == 0
    assert all(before.values())
    # 30 days after the codes' day window let go of the second code (61 s after the first)
    h.clock.advance(31 * DAY_S + 1)
    assert await pruner.prune(h.clock.now()) == sum(before.values())
    assert {t.name: count(h, t) for t in bookkeeping} == dict.fromkeys(before, 0)
    assert {t: pruned.labels(t)._value.get() for t in before} == before
    # the password lives on in credentials; an old request redelivered is a new request whose
    # code is issued afresh (the old one had expired): nothing stale can be used
    assert await h.login(login, password) == str(acc.account_id)


async def test_an_idle_failure_count_ages_out_and_a_touched_one_stays(h: Harness) -> None:
    """Counts of failed logins that never locked have no lock time to age by: they age by the
    last attempt that touched them (``touched_at``), locked ones once the lock is over too."""
    acc = account_changed(h.keyring)
    await h.accounts(acc)
    login = mobile_of(h.keyring, acc)
    quiet, locked = "192.0.2.7", "192.0.2.8"
    for address, guesses in ((quiet, 2), (locked, 5)):  # the harness locks at 3
        for _ in range(guesses):
            assert await h.login(login, "wrong-pass", address) is None
    route = route_key(h.keyring, login)
    pair = {a: h.keyring.keyed_hash("lockout", f"{route}|{a}") for a in (quiet, locked)}
    everywhere = h.keyring.keyed_hash("lockout", route)
    pruned = PromCounter("rows_pruned_total", "test", ["table"], registry=CollectorRegistry())
    pruner = Pruner(db=h.db, tables=[p for p in prunable if p.table is login_failures],
                    retention_days=30, pruned=pruned, batch=10)

    def counts() -> dict[str, int]:
        rows = h.db.run_sync(lambda s: s.execute(
            select(login_failures.c.subject, login_failures.c.failures)).all())
        return {subject: failures for subject, failures in rows}

    assert set(counts()) == {pair[quiet], pair[locked], everywhere}
    assert await pruner.prune(h.clock.now()) == 0
    h.clock.advance(29 * DAY_S)
    assert await h.login(login, "wrong-pass", quiet) is None  # touches its count and the login's
    h.clock.advance(2 * DAY_S)
    assert await pruner.prune(h.clock.now()) == 1  # the locked pair, idle for 31 days
    left = counts()
    assert set(left) == {pair[quiet], everywhere} and left[pair[quiet]] == 3
    h.clock.advance(31 * DAY_S)
    assert await pruner.prune(h.clock.now()) == 2
    assert counts() == {}
    assert pruned.labels("login_failures")._value.get() == 3


class WrittenMeanwhile:
    """The pruner's session; ``meanwhile`` runs right after its first statement (the select of
    old rows), as another transaction committing there would."""

    def __init__(self, session: Session, meanwhile: Callable[[], None]) -> None:
        self._session, self._meanwhile, self._statements = session, meanwhile, 0

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        result = self._session.execute(*args, **kwargs)
        self._statements += 1
        if self._statements == 1:
            self._meanwhile()
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def test_a_count_that_locks_between_the_prunes_select_and_its_delete_is_kept(
        database_url: str) -> None:
    """A lock-out count last touched past the retention is selected by the pruner; the fifth
    wrong guess locks it before the delete: the delete checks the age again and keeps it
    (DESIGN: no attempt can erase a lock)."""
    db = Database(url=database_url, name="prune-race")
    migrate(db.engine, MIGRATIONS)
    now = time.time()
    item = next(p for p in prunable if p.table is login_failures)
    try:
        with Session(db.engine) as s, s.begin():
            s.execute(login_failures.insert().values(subject="S", failures=4, locked_until=None,
                                                     touched_at=now - 31 * DAY_S, login=None))
        places: list[int | None] = []
        with Session(db.engine) as s, s.begin():
            guess = partial(reserve, s, "S", limit=5, lock_s=900.0, now=now)
            deleted, _ = prune_batch(WrittenMeanwhile(s, lambda: places.append(guess())),  # type: ignore[arg-type]
                                     item, now, 30 * DAY_S, 500)
        assert places == [5] and deleted == 0
        with Session(db.engine) as s:
            [row] = s.execute(select(login_failures)).all()
        assert (row.failures, row.locked_until) == (5, now + 900.0)
    finally:
        db.close()
