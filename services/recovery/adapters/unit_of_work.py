"""``Sql*`` adapters of the service layer's ports, over the SQL modules beside them, and
``SqlUnitOfWork``: one ``Database.run`` = one transaction in the database thread."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from services.common import store
from services.common.codec import WireRecord
from services.common.db import Database, is_transient
from services.common.logins import LoginKind
from services.recovery.adapters import counters, credentials, projection, repository
from services.recovery.adapters.support_tables import request_log as request_log_table
from services.recovery.adapters.tables import accounts, codes, login_failures, outbox, rate_events
from services.recovery.adapters.tables import counters as counters_table
from services.recovery.adapters.tables import credentials as credentials_table
from services.recovery.domain.commands import ProjectAccount
from services.recovery.domain.model import Account, LimitKind, LoggedRequest, NewCode, Window
from services.recovery.service_layer.ports import RateEvent, Repositories

T = TypeVar("T")


def _delete_in(session: Session, column: Any, values: Collection[str]) -> None:
    if values:
        session.execute(delete(column.table).where(column.in_(sorted(values))))


class SqlAccounts:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_keys(self, keys: Iterable[Mapping[LoginKind, str]]) -> list[Account]:
        return repository.accounts_by_keys(self.session, keys)

    def epochs(self, account_ids: Collection[str]) -> dict[str, tuple[int, int, int]]:
        return projection.epochs(self.session, account_ids)

    def insert(self, accounts: Sequence[ProjectAccount], now: float) -> None:
        projection.insert_accounts(self.session, accounts, now)

    def update(self, account: ProjectAccount, now: float) -> None:
        projection.update_account(self.session, account, now)

    def by_ids(self, account_ids: Collection[str]) -> list[Account]:
        rows = self.session.execute(
            select(accounts).where(accounts.c.account_id.in_(sorted(account_ids))))
        return [repository.account_of(r) for r in rows]

    def delete(self, account_ids: Collection[str]) -> None:
        projection.delete_accounts(self.session, account_ids)


class SqlProcessed:
    def __init__(self, session: Session) -> None:
        self.session = session

    def seen(self, event_ids: Collection[str]) -> set[str]:
        return repository.already_processed(self.session, list(event_ids)) if event_ids else set()

    def mark(self, event_ids: Collection[str]) -> None:
        repository.mark_processed(self.session, list(event_ids))


class SqlRateEvents:
    def __init__(self, session: Session) -> None:
        self.session = session

    def history(self, kind: LimitKind, subject: str, since: float, newest: int) -> list[float]:
        return repository.rate_history(self.session, kind, subject, since, newest)

    def add(self, events: Iterable[RateEvent]) -> None:
        repository.add_rate_events(self.session, events)

    def prune(self, before: float) -> None:
        repository.prune_rate_events(self.session, before)

    def delete_subjects(self, subjects: Collection[str]) -> None:
        _delete_in(self.session, rate_events.c.subject, subjects)


class SqlWindows:
    def __init__(self, session: Session) -> None:
        self.session = session

    def take(self, subject: str, window: Window, now: float) -> int | None:
        return counters.take(self.session, subject, window, now)

    def prune(self, before: float) -> None:
        counters.prune(self.session, before)

    def delete_subjects(self, subjects: Collection[str]) -> None:
        _delete_in(self.session, counters_table.c.subject, subjects)


class SqlFailureCounts:
    def __init__(self, session: Session) -> None:
        self.session = session

    def reserve(self, subject: str, *, limit: int, lock_s: float, now: float) -> int | None:
        return counters.reserve(self.session, subject, limit=limit, lock_s=lock_s, now=now)

    def release(self, subject: str, place: int, *, limit: int) -> None:
        counters.release(self.session, subject, place, limit=limit)

    def touch(self, subject: str, *, now: float) -> None:
        counters.touch(self.session, subject, now=now)

    def failures(self, subject: str) -> tuple[int, float | None]:
        return counters.failures(self.session, subject)

    def delete_subjects(self, subjects: Collection[str]) -> None:
        _delete_in(self.session, login_failures.c.subject, subjects)


class SqlCodes:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, codes: Sequence[NewCode]) -> None:
        repository.add_codes(self.session, [
            {**vars(c), "status": c.status.value, "channel": c.channel.value} for c in codes])

    def newest_pending(self, account_id: str, now: float) -> tuple[str, str] | None:
        return credentials.newest_pending(self.session, account_id, now)

    def activate(self, code_id: str, now: float) -> tuple[str, str, str] | None:
        return credentials.activate_code(self.session, code_id, now)

    def void_pending(self, account_id: str, *, except_code: str | None = None) -> None:
        repository.void_pending(self.session, account_id, except_code=except_code)

    def expire(self, now: float) -> None:
        repository.expire_codes(self.session, now)

    def delete_for(self, account_ids: Collection[str]) -> None:
        _delete_in(self.session, codes.c.account_id, account_ids)


class SqlCredentials:
    def __init__(self, session: Session) -> None:
        self.session = session

    def current(self, account_id: str) -> str | None:
        return credentials.current_password(self.session, account_id)

    def set(self, account_id: str, hash_: str, now: float) -> None:
        credentials.set_password(self.session, account_id, hash_, now)

    def delete_for(self, account_ids: Collection[str]) -> None:
        _delete_in(self.session, credentials_table.c.account_id, account_ids)


class SqlRequestLog:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, entries: Sequence[LoggedRequest]) -> None:
        repository.log_requests(self.session, entries)

    def prune(self, login_keys: Collection[str], now: float) -> None:
        repository.prune_request_log(self.session, login_keys, now)

    def last(self, login_key: str) -> list[LoggedRequest]:
        return [LoggedRequest(**{f: getattr(row, f) for f in LoggedRequest.__dataclass_fields__})
                for row in repository.last_requests(self.session, login_key)]

    def delete_for(self, account_ids: Collection[str]) -> None:
        _delete_in(self.session, request_log_table.c.account_id, account_ids)


class SqlOutbox:
    """Stages into the ``outbox`` table (``services.common.store``) and keeps the rows it
    staged, in order, for the unit of work to hand over once the transaction has committed."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.staged: list[store.Staged] = []

    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        self.staged.extend(store.stage_outbox(self.session, outbox, topic, records))


def sql_repositories(session: Session, staging: SqlOutbox) -> Repositories:
    return Repositories(
        accounts=SqlAccounts(session), processed=SqlProcessed(session),
        rate_events=SqlRateEvents(session), windows=SqlWindows(session),
        failures=SqlFailureCounts(session), codes=SqlCodes(session),
        credentials=SqlCredentials(session), request_log=SqlRequestLog(session),
        outbox=staging)


class SqlUnitOfWork:
    """One ``Database.run`` = one transaction; the outbox rows it staged are handed over (to the
    relay) in the database thread right after it commits, so in commit order."""

    def __init__(self, *, db: Database, hand_over: store.HandOver) -> None:
        self.db = db
        self.hand_over = hand_over

    async def run(self, work: Callable[[Repositories], T]) -> T:
        result, _ = await self.db.run(partial(_in_transaction, work),
                                      after_commit=lambda done: self.hand_over(done[1]))
        return result

    def transient(self, exc: BaseException) -> bool:
        return is_transient(exc)


def _in_transaction(work: Callable[[Repositories], T],
                    session: Session) -> tuple[T, list[store.Staged]]:
    staging = SqlOutbox(session)
    return work(sql_repositories(session, staging)), staging.staged
