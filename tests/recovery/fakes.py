"""In-memory doubles of recovery's ports (unit tests): the same answers as the ``Sql*``
adapters, with no database."""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from services.common.codec import WireRecord
from services.common.logins import LoginKind
from services.recovery.adapters.support_tables import KEEP_PER_LOGIN, KEEP_S
from services.recovery.domain.commands import ProjectAccount
from services.recovery.domain.model import Account, CodeStatus, LimitKind, LoggedRequest, NewCode, Window
from services.recovery.service_layer.ports import RateEvent, Repositories
from tests.support import windows as sliding

T = TypeVar("T")


class FakeConflict(Exception):
    """A request id marked twice: the transaction fails, as a primary key would make it."""


class FakeDatabaseAway(Exception):
    """A transient failure: the caller may retry the transaction."""


@dataclass
class FakeStore:
    """Every table of recovery, as plain Python values."""

    accounts: dict[str, ProjectAccount] = field(default_factory=dict)
    processed: set[str] = field(default_factory=set)
    rate_events: list[RateEvent] = field(default_factory=list)
    windows: dict[str, list[float]] = field(default_factory=dict)  # when each event leaves
    failures: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    codes: list[NewCode] = field(default_factory=list)
    credentials: dict[str, str] = field(default_factory=dict)
    request_log: list[LoggedRequest] = field(default_factory=list)
    staged: list[tuple[str, WireRecord]] = field(default_factory=list)  # this transaction's


def _account(row: ProjectAccount) -> Account:
    return Account(
        account_id=row.account_id, status=row.status, tv_product=row.tv_product,
        login_keys={LoginKind.MOBILE: row.login_key_mobile,
                    LoginKind.PERSONAL_ACCOUNT: row.login_key_personal_account},
        sms_usable=row.sms_usable, email_usable=row.email_usable, mobile_enc=row.mobile_enc,
        mobile_masked=row.mobile_masked, email_enc=row.email_enc, email_masked=row.email_masked,
        version=row.version)


class FakeAccounts:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def by_keys(self, keys: Iterable[Mapping[LoginKind, str]]) -> list[Account]:
        keys = list(keys)
        mobiles = {k[LoginKind.MOBILE] for k in keys if LoginKind.MOBILE in k}
        numbers = {k[LoginKind.PERSONAL_ACCOUNT] for k in keys if LoginKind.PERSONAL_ACCOUNT in k}
        return [_account(a) for a in self.store.accounts.values()
                if a.login_key_mobile in mobiles or a.login_key_personal_account in numbers]

    def epochs(self, account_ids: Collection[str]) -> dict[str, tuple[int, int, int]]:
        rows = self.store.accounts
        return {i: (rows[i].version, rows[i].holder_epoch, rows[i].contacts_epoch)
                for i in account_ids if i in rows}

    def insert(self, accounts: Sequence[ProjectAccount], now: float) -> None:
        for account in accounts:
            assert account.account_id not in self.store.accounts, "inserted twice"
            self.store.accounts[account.account_id] = account

    def update(self, account: ProjectAccount, now: float) -> None:
        assert account.account_id in self.store.accounts
        self.store.accounts[account.account_id] = account

    def by_ids(self, account_ids: Collection[str]) -> list[Account]:
        return [_account(self.store.accounts[i]) for i in account_ids if i in self.store.accounts]

    def lock_versions(self, account_ids: Collection[str]) -> dict[str, int]:
        rows = self.store.accounts  # one unit of work at a time: nothing to lock
        return {i: rows[i].version for i in account_ids if i in rows}

    def delete(self, account_ids: Collection[str]) -> None:
        for i in account_ids:
            self.store.accounts.pop(i, None)


class FakeProcessed:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def seen(self, event_ids: Collection[str]) -> set[str]:
        return set(event_ids) & self.store.processed

    def mark(self, event_ids: Collection[str]) -> None:
        if self.store.processed & set(event_ids):
            raise FakeConflict("request already processed")
        self.store.processed.update(event_ids)


class FakeRateEvents:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def history(self, kind: LimitKind, subject: str, since: float, newest: int) -> list[float]:
        times = sorted(at for k, s, at in self.store.rate_events
                       if k == kind and s == subject and at > since)
        return times[-newest:] if newest > 0 else []

    def add(self, events: Iterable[RateEvent]) -> None:
        self.store.rate_events.extend(events)

    def prune(self, before: float) -> None:
        self.store.rate_events = [e for e in self.store.rate_events if e[2] >= before]

    def delete_subjects(self, subjects: Collection[str]) -> None:
        self.store.rate_events = [e for e in self.store.rate_events if e[1] not in subjects]


class FakeWindows:
    """Sliding windows as their definition reads: the times each subject's events leave their
    window, an event let in while fewer than ``max_events`` are still inside."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def take(self, subject: str, window: Window, now: float) -> int | None:
        return sliding.take(self.store.windows, subject, max_events=window.max_events,
                            window_s=window.window_s, now=now)

    def peek(self, subject: str, window: Window, now: float) -> int | None:
        return sliding.peek(self.store.windows, subject, max_events=window.max_events,
                            window_s=window.window_s, now=now)

    def take_together(self, groups: Sequence[Sequence[tuple[str, Window]]], now: float
                      ) -> list[tuple[int, int] | None]:
        return sliding.take_together(self.store.windows, [
            [(subject, w.max_events, w.window_s) for subject, w in group] for group in groups], now)

    def prune(self, before: float) -> None:
        sliding.prune(self.store.windows, before)

    def delete_subjects(self, subjects: Collection[str]) -> None:
        for subject in subjects:
            self.store.windows.pop(subject, None)


class FakeFailureCounts:
    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.touched: list[str] = []
        self.logins: dict[str, str] = {}  # a count per login and address → its login's subject

    def reserve(self, subject: str, *, limit: int, lock_s: float, now: float,
                login: str | None = None) -> int | None:
        if login is not None:
            self.logins[subject] = login
        if subject not in self.store.failures:
            self.store.failures[subject] = (1, now + lock_s if limit <= 1 else None)
            return 1
        taken, locked_until = self.store.failures[subject]
        expired = locked_until is not None and locked_until <= now
        if not (expired or (locked_until is None and taken < limit)):
            return None
        place = 1 if expired else taken + 1
        self.store.failures[subject] = (place, now + lock_s if place >= limit else None)
        return place

    def touch(self, subject: str, *, now: float) -> None:
        self.touched.append(subject)

    def release(self, subject: str, place: int, *, limit: int) -> None:
        if subject in self.store.failures:
            taken, locked_until = self.store.failures[subject]
            self.store.failures[subject] = (taken - place if taken > place else 0,
                                            locked_until if taken - place >= limit else None)

    def failures(self, subject: str) -> tuple[int, float | None]:
        return self.store.failures.get(subject, (0, None))

    def locked_addresses(self, login: str, now: float) -> tuple[int, float | None]:
        locks = [until for subject, of in self.logins.items() if of == login
                 and (until := self.store.failures.get(subject, (0, None))[1]) is not None
                 and until > now]
        return len(locks), max(locks, default=None)

    def delete_subjects(self, subjects: Collection[str]) -> None:
        for subject in [*subjects, *(s for s, of in self.logins.items() if of in subjects)]:
            self.store.failures.pop(subject, None)
            self.logins.pop(subject, None)


class FakeCodes:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def _set(self, where: Callable[[NewCode], bool], status: CodeStatus) -> None:
        self.store.codes = [replace(c, status=status) if where(c) else c for c in self.store.codes]

    def add(self, codes: Sequence[NewCode]) -> None:
        accounts = {c.account_id for c in codes}
        self._set(lambda c: c.account_id in accounts and c.status is CodeStatus.PENDING,
                  CodeStatus.VOIDED)
        self.store.codes.extend(codes)

    def newest_pending(self, account_id: str, now: float) -> tuple[str, str] | None:
        pending = [c for c in self.store.codes if c.account_id == account_id
                   and c.status is CodeStatus.PENDING and c.expires_at > now]
        if not pending:
            return None
        newest = max(pending, key=lambda c: c.created_at)
        return newest.code_id, newest.hash

    def activate(self, code_id: str, now: float) -> tuple[str, str, str] | None:
        for code in self.store.codes:
            if code.code_id == code_id and code.status is CodeStatus.PENDING \
                    and code.expires_at > now:
                self._set(lambda c: c.code_id == code_id, CodeStatus.ACTIVE)
                return code.account_id, code.hash, code.locale or "ru"
        return None

    def void_pending(self, account_id: str, *, except_code: str | None = None) -> None:
        self._set(lambda c: c.account_id == account_id and c.status is CodeStatus.PENDING
                  and c.code_id != except_code, CodeStatus.VOIDED)

    def expire(self, now: float) -> None:
        self._set(lambda c: c.status is CodeStatus.PENDING and c.expires_at <= now,
                  CodeStatus.EXPIRED)

    def delete_for(self, account_ids: Collection[str]) -> None:
        self.store.codes = [c for c in self.store.codes if c.account_id not in account_ids]


class FakeCredentials:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def current(self, account_id: str) -> str | None:
        return self.store.credentials.get(account_id)

    def set(self, account_id: str, hash_: str, now: float) -> None:
        self.store.credentials[account_id] = hash_

    def delete_for(self, account_ids: Collection[str]) -> None:
        for account_id in account_ids:
            self.store.credentials.pop(account_id, None)


class FakeRequestLog:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def record(self, entries: Sequence[LoggedRequest]) -> None:
        self.store.request_log.extend(entries)

    def prune(self, login_keys: Collection[str], now: float) -> None:
        kept = [e for e in self.store.request_log if e.decided_at >= now - KEEP_S]
        for key in login_keys:
            mine = [e for e in kept if e.login_key == key]
            kept = [e for e in kept if e.login_key != key or e in mine[-KEEP_PER_LOGIN:]]
        self.store.request_log = kept

    def last(self, login_key: str) -> list[LoggedRequest]:
        return [e for e in reversed(self.store.request_log)
                if e.login_key == login_key][:KEEP_PER_LOGIN]

    def delete_for(self, account_ids: Collection[str]) -> None:
        self.store.request_log = [e for e in self.store.request_log
                                  if e.account_id not in account_ids]

    def delete_logins(self, login_keys: Collection[str]) -> None:
        self.store.request_log = [e for e in self.store.request_log
                                  if e.login_key not in login_keys]


class FakeOutbox:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        self.store.staged.extend((topic, r) for r in records)


def fake_repositories(store: FakeStore) -> Repositories:
    return Repositories(
        accounts=FakeAccounts(store), processed=FakeProcessed(store),
        rate_events=FakeRateEvents(store), windows=FakeWindows(store),
        failures=FakeFailureCounts(store), codes=FakeCodes(store),
        credentials=FakeCredentials(store), request_log=FakeRequestLog(store),
        outbox=FakeOutbox(store))


class FakeUnitOfWork:
    """Each ``run`` works on a copy of the store and keeps it if ``work`` returns (a failing
    one leaves the store as it was); ``published`` holds what committed transactions staged,
    in commit order. ``fail_next`` makes the next transactions fail before their work."""

    def __init__(self) -> None:
        self.store = FakeStore()
        self.published: list[tuple[str, WireRecord]] = []
        self.fail_next: list[Exception] = []
        self.transactions = 0

    async def run(self, work: Callable[[Repositories], T]) -> T:
        self.transactions += 1
        if self.fail_next:
            raise self.fail_next.pop(0)
        attempt = copy.deepcopy(self.store)
        result = work(fake_repositories(attempt))
        self.published.extend(attempt.staged)
        attempt.staged = []
        self.store = attempt
        return result

    def transient(self, exc: BaseException) -> bool:
        return isinstance(exc, FakeDatabaseAway)

    def topics(self) -> list[str]:
        return [topic for topic, _ in self.published]
