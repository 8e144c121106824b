"""The shared windows a code counts in (``LIMIT_ACCOUNT_DAILY_MAX``, ``SMS_HOURLY_BUDGET``) are
taken when the code is written, all or none, on the account that gets it: a request decided
again counts once, a refused one counts nowhere, and an erasure meanwhile leaves no count behind
(SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from schemas.events import AccountStatus, CodeRequested
from schemas.topics import CODE_ISSUED, CODE_REJECTED
from services.common.consumer_loop import BatchRunner
from services.common.crypto import Keyring
from services.common.metrics import ServiceMetrics
from services.recovery.adapters import repository
from services.recovery.adapters.repository import SqlRepositories
from services.recovery.adapters.tables import window_slots, windows
from services.recovery.domain.model import Policy, Window
from services.recovery.entrypoints.agents import issue_code
from services.recovery.service_layer.project_accounts import erase_accounts
from tests.recovery.builders import POLICY, inbound, mobile_of, request
from tests.recovery.conftest import account_changed
from tests.recovery.integration.harness import Harness, harness
from tests.support.doubles import Relay, Sent

DAILY_2 = replace(POLICY, login_cooldown=Window(max_events=1, window_s=60),
                  per_destination=Window(max_events=100, window_s=600),
                  per_ip=Window(max_events=1000, window_s=300),
                  account_daily=Window(max_events=2, window_s=86400))


@pytest.fixture
def open_harnesses(database_url: str, keyring: Keyring) -> Iterator[Any]:
    made: list[Harness] = []

    def make(policy: Policy) -> Harness:
        made.append(harness(database_url, keyring, policy))
        return made[-1]

    yield make
    for h in made:
        h.db.close()


def slots(h: Harness, subject: str) -> int:
    return int(h.db.run_sync(lambda s: s.execute(
        select(func.count()).select_from(window_slots).where(window_slots.c.subject == subject)
    ).scalar_one()))


def outcome(h: Harness, event: CodeRequested) -> tuple[str, str | None]:
    [got] = [(t, v.get("reason")) for t, v in h.staged()
             if v.get("request_event_id") == str(event.event_id)]
    return got


async def test_a_request_decided_again_after_a_crash_counts_once(open_harnesses: Any) -> None:
    h = open_harnesses(DAILY_2)
    account = account_changed(h.keyring)
    await h.accounts(account)
    login = mobile_of(h.keyring, account)
    first = request(login)
    decided = await h.issue_codes([issue_code(first)], [])
    decided.abandon()  # the worker dies before the write; the record was not acked
    await h.requests(first)  # decided again at the restart, and written
    day = h.keyring.keyed_hash("limit", "account-day:" + str(account.account_id))
    assert slots(h, day) == 1 and slots(h, "sms-budget") == 1
    h.clock.advance(61)  # past the cool-down: the day's second code is allowed
    second = request(login)
    await h.requests(second)
    assert outcome(h, second) == (CODE_ISSUED, None)


async def test_a_database_blip_while_a_batch_is_decided_counts_each_code_once(
        open_harnesses: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner decides a batch again after a transient error: the chunks decided before it
    took nothing (60 requests: two chunks of the decision)."""
    h = open_harnesses(replace(DAILY_2, sms_hourly=Window(max_events=60, window_s=3600)))
    accounts = [account_changed(h.keyring) for _ in range(60)]
    await h.accounts(*accounts)
    run, calls = h.uow.run, [0]

    async def blips_once(work: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:  # the second chunk's transaction
            raise OperationalError("SELECT 1", {}, ConnectionError("database away"))
        return await run(work)

    monkeypatch.setattr(h.uow, "run", blips_once)
    runner: BatchRunner[CodeRequested] = BatchRunner(
        service="recovery", topic="selfcare.code.requested.v1", model=CodeRequested,
        handler=h.in_order, publisher=Sent(), relay=Relay(),
        metrics=ServiceMetrics("recovery"), max_record_bytes=65536, retry_initial_s=0.01)
    await runner.process([inbound(request(mobile_of(h.keyring, a))).raw for a in accounts])
    assert calls[0] > 2  # the blip happened and the batch was decided again
    assert len([t for t, _ in h.staged() if t == CODE_ISSUED]) == 60
    assert slots(h, "sms-budget") == 60


async def test_a_request_the_sms_budget_refuses_takes_nothing_of_its_daily_count(
        open_harnesses: Any) -> None:
    h = open_harnesses(replace(DAILY_2, login_cooldown=Window(max_events=0, window_s=0),
                               sms_hourly=Window(max_events=1, window_s=3600)))
    x, y = account_changed(h.keyring), account_changed(h.keyring)
    await h.accounts(x, y)
    await h.requests(request(mobile_of(h.keyring, x)))  # the hour's one SMS
    refused = [request(mobile_of(h.keyring, y)) for _ in range(2)]
    for event in refused:
        h.clock.advance(5)
        await h.requests(event)
        assert outcome(h, event) == (CODE_REJECTED, "rate_limited")
    day = h.keyring.keyed_hash("limit", "account-day:" + str(y.account_id))
    assert slots(h, day) == 0
    h.clock.advance(3600)  # the budget is back: y's first code of the day
    late = [request(mobile_of(h.keyring, y)) for _ in range(3)]
    for event in late:
        await h.requests(event)
        h.clock.advance(3600)
    assert [outcome(h, e)[1] for e in late] == [None, None, "rate_limited"]  # two a day


async def test_simultaneous_requests_within_one_batch_take_the_budget_at_most_once_each(
        open_harnesses: Any) -> None:
    """Decided together, each looked at the budget with room; written, only as many as it holds
    get a code, and the rest are refused by the budget (their daily counts untouched)."""
    h = open_harnesses(replace(DAILY_2, sms_hourly=Window(max_events=3, window_s=3600)))
    accounts = [account_changed(h.keyring) for _ in range(5)]
    await h.accounts(*accounts)
    events = [request(mobile_of(h.keyring, a)) for a in accounts]
    await h.requests(*events)
    assert [outcome(h, e)[1] for e in events] == [None, None, None, "rate_limited", "rate_limited"]
    assert slots(h, "sms-budget") == 3
    assert [slots(h, h.keyring.keyed_hash("limit", "account-day:" + str(a.account_id)))
            for a in accounts] == [1, 1, 1, 0, 0]
    assert h.metrics.sms_budget_exceeded.labels("sms")._value.get() == 2


async def test_a_code_moved_to_another_account_counts_for_that_account(
        open_harnesses: Any) -> None:
    h = open_harnesses(replace(DAILY_2, account_daily=Window(max_events=1, window_s=86400)))
    a = account_changed(h.keyring)
    await h.accounts(a)
    mobile = mobile_of(h.keyring, a)
    first = request(mobile)
    complete = await h.issue([inbound(first)])  # decided on A; hashing
    await h.accounts(a.model_copy(update={"version": 2, "status": AccountStatus.CLOSED}))
    b = account_changed(h.keyring, mobile=mobile)  # the mobile linked to a new contract
    await h.accounts(b)
    await complete()
    assert [v["account_id"] for t, v in h.staged() if t == CODE_ISSUED] == [str(b.account_id)]
    day = lambda account: h.keyring.keyed_hash(  # noqa: E731
        "limit", "account-day:" + str(account.account_id))
    assert (slots(h, day(a)), slots(h, day(b))) == (0, 1)
    h.clock.advance(120)
    again = request(mobile)
    await h.requests(again)
    assert outcome(h, again) == (CODE_REJECTED, "rate_limited")  # B's one code a day


async def test_an_erasure_while_a_request_is_decided_leaves_no_count_of_the_account(
        open_harnesses: Any, keyring: Keyring, monkeypatch: pytest.MonkeyPatch) -> None:
    """The erasure commits (on the worker of the account's partition) after the decision read
    the account: the write finds it gone, and no window row of the account is made."""
    h, other = open_harnesses(POLICY), open_harnesses(POLICY)
    account = account_changed(h.keyring)
    await h.accounts(account)
    aid = str(account.account_id)
    day = h.keyring.keyed_hash("limit", "account-day:" + aid)
    peek, erased = repository.SqlWindows.peek, []

    def peek_then_erase(self: repository.SqlWindows, subject: str, window: Window,
                        now: float) -> int | None:
        if subject == day and not erased:
            erased.append(other.db.run_sync(
                lambda s: erase_accounts(SqlRepositories(s), [aid], keyring)))
        return peek(self, subject, window, now)

    monkeypatch.setattr(repository.SqlWindows, "peek", peek_then_erase)
    event = request(mobile_of(h.keyring, account))
    await h.requests(event)
    assert erased == [1] and outcome(h, event) == (CODE_REJECTED, "unknown_login")
    rings = h.db.run_sync(lambda s: s.execute(
        select(func.count()).select_from(windows).where(windows.c.subject == day)).scalar_one())
    assert (rings, slots(h, day)) == (0, 0)


async def test_a_code_moved_to_an_account_erased_meanwhile_is_not_written(
        open_harnesses: Any, keyring: Keyring, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write finds the login re-linked to B, and B's erasure commits right after that read:
    B is locked and read again before the code is decided on it, so nothing of B is written (an
    erasure after the lock waits for the write, then deletes what it wrote)."""
    h, other = open_harnesses(DAILY_2), open_harnesses(DAILY_2)
    a = account_changed(h.keyring)
    await h.accounts(a)
    mobile = mobile_of(h.keyring, a)
    event = request(mobile)
    complete = await h.issue([inbound(event)])  # decided on A; hashing
    await h.accounts(a.model_copy(update={"version": 2, "status": AccountStatus.CLOSED}))
    b = account_changed(h.keyring, mobile=mobile)
    await h.accounts(b)
    bid = str(b.account_id)
    read, erased = repository.SqlAccounts.by_keys, []

    def erased_right_after_it_is_read(self: repository.SqlAccounts, keys: Any) -> list[Any]:
        found = read(self, keys)
        if any(x.account_id == bid for x in found) and not erased:
            erased.append(other.db.run_sync(
                lambda s: erase_accounts(SqlRepositories(s), [bid], keyring)))
        return found

    monkeypatch.setattr(repository.SqlAccounts, "by_keys", erased_right_after_it_is_read)
    await complete()
    assert erased == [1]
    assert outcome(h, event) == (CODE_REJECTED, "account_closed")  # A, as it stands
    day = h.keyring.keyed_hash("limit", "account-day:" + bid)
    assert slots(h, day) == 0
    assert [c for c in h.codes() if str(c.account_id) == bid] == []
