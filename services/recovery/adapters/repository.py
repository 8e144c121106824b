"""Recovery's unit of work and its ``Sql*`` repositories over SQLAlchemy Core, in one module.

- **Unit of work** (``SqlUnitOfWork``): one ``Database.run`` = one transaction in the database
  thread; the outbox rows it staged are handed over (to the relay) right after it commits.
- **Repositories** (``Sql*``): the service layer's ports, each over the SQL functions below.
- **SQL**, every function inside the caller's transaction: the decision's queries (accounts by
  login key, processed events, rate events, codes), support's ``request_log`` (see
  ``support_tables``), the counters every worker shares, logins, and the accounts projection.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Select, Update, and_, bindparam, case, delete, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from schemas.events import AccountStatus, TvProduct
from services.common.db import (
    RepositoryUnitOfWork,
    SqlOutbox,
    already_processed,
    any_of,
    chunks,
    forget_windows,
    insert_rows,
    is_postgres,
    is_transient,
    mark_processed,
    peek_window,
    prune_windows,
    take_window,
    take_windows,
)
from services.common.logins import LoginKind
from services.recovery.adapters.support_tables import KEEP_PER_LOGIN, KEEP_S, request_log
from services.recovery.adapters.tables import (
    accounts,
    codes,
    credentials,
    login_failures,
    outbox,
    processed_events,
    rate_events,
)
from services.recovery.domain.commands import ProjectAccount
from services.recovery.domain.model import Account, CodeStatus, LimitKind, LoggedRequest, NewCode, Window
from services.recovery.service_layer.ports import RateEvent, Repositories

# --- Unit of work ----------------------------------------------------------------------------
# A function of the service layer runs over the ``Sql*`` repositories of one session, in one
# transaction; what it staged in the outbox goes to the relay once the transaction has committed.


class SqlRepositories(Repositories):
    """The ``Sql*`` repositories bound to one session; its outbox keeps what was staged."""

    outbox: SqlOutbox

    def __init__(self, session: Session) -> None:
        super().__init__(
            accounts=SqlAccounts(session), processed=SqlProcessed(session),
            rate_events=SqlRateEvents(session), windows=SqlWindows(session),
            failures=SqlFailureCounts(session), codes=SqlCodes(session),
            credentials=SqlCredentials(session), request_log=SqlRequestLog(session),
            outbox=SqlOutbox(session, outbox))


class SqlUnitOfWork(RepositoryUnitOfWork[SqlRepositories]):
    """One ``Database.run`` = one transaction over every repository."""

    repository = SqlRepositories

    def transient(self, exc: BaseException) -> bool:
        return is_transient(exc)


# --- Repositories ----------------------------------------------------------------------------
# The ``Sql*`` adapters of the service layer's ports, each over the SQL functions below.


def _delete_in(session: Session, column: Any, values: Collection[str]) -> None:
    if values:
        session.execute(delete(column.table).where(column.in_(sorted(values))))


class SqlAccounts:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_keys(self, keys: Iterable[Mapping[LoginKind, str]]) -> list[Account]:
        return accounts_by_keys(self.session, keys)

    def epochs(self, account_ids: Collection[str]) -> dict[str, tuple[int, int, int]]:
        return epochs(self.session, account_ids)

    def insert(self, accounts: Sequence[ProjectAccount], now: float) -> None:
        insert_accounts(self.session, accounts, now)

    def update(self, account: ProjectAccount, now: float) -> None:
        update_account(self.session, account, now)

    def by_ids(self, account_ids: Collection[str]) -> list[Account]:
        rows = self.session.execute(
            select(accounts).where(accounts.c.account_id.in_(sorted(account_ids))))
        return [account_of(r) for r in rows]

    def lock_versions(self, account_ids: Collection[str]) -> dict[str, int]:
        if not account_ids:
            return {}
        query = _lock_versions_query(is_postgres(self.session))
        return {r.account_id: r.version
                for part in chunks(self.session, sorted(account_ids))
                for r in self.session.execute(query, {"ids": part})}

    def delete(self, account_ids: Collection[str]) -> None:
        delete_accounts(self.session, account_ids)


class SqlProcessed:
    def __init__(self, session: Session) -> None:
        self.session = session

    def seen(self, event_ids: Collection[str]) -> set[str]:
        return already_processed(self.session, processed_events, event_ids) if event_ids else set()

    def mark(self, event_ids: Collection[str]) -> None:
        mark_processed(self.session, processed_events, event_ids)


class SqlRateEvents:
    def __init__(self, session: Session) -> None:
        self.session = session

    def history(self, kind: LimitKind, subject: str, since: float, newest: int) -> list[float]:
        return rate_history(self.session, kind, subject, since, newest)

    def add(self, events: Iterable[RateEvent]) -> None:
        add_rate_events(self.session, events)

    def prune(self, before: float) -> None:
        prune_rate_events(self.session, before)

    def delete_subjects(self, subjects: Collection[str]) -> None:
        _delete_in(self.session, rate_events.c.subject, subjects)


class SqlWindows:
    def __init__(self, session: Session) -> None:
        self.session = session

    def take(self, subject: str, window: Window, now: float) -> int | None:
        return take(self.session, subject, window, now)

    def peek(self, subject: str, window: Window, now: float) -> int | None:
        return peek_window(self.session, subject, max_events=window.max_events,
                           window_s=window.window_s, now=now)

    def take_together(self, groups: Sequence[Sequence[tuple[str, Window]]], now: float
                      ) -> list[tuple[int, int] | None]:
        return take_windows(self.session, [[(subject, w.max_events, w.window_s)
                                            for subject, w in group] for group in groups], now)

    def prune(self, before: float) -> None:
        prune_windows(self.session, before)

    def delete_subjects(self, subjects: Collection[str]) -> None:
        forget_windows(self.session, subjects)


class SqlFailureCounts:
    def __init__(self, session: Session) -> None:
        self.session = session

    def reserve(self, subject: str, *, limit: int, lock_s: float, now: float,
                login: str | None = None) -> int | None:
        return reserve(self.session, subject, limit=limit, lock_s=lock_s, now=now, login=login)

    def release(self, subject: str, place: int, *, limit: int) -> None:
        release(self.session, subject, place, limit=limit)

    def touch(self, subject: str, *, now: float) -> None:
        touch(self.session, subject, now=now)

    def failures(self, subject: str) -> tuple[int, float | None]:
        return failures(self.session, subject)

    def locked_addresses(self, login: str, now: float) -> tuple[int, float | None]:
        return locked_addresses(self.session, login, now)

    def delete_subjects(self, subjects: Collection[str]) -> None:
        _delete_in(self.session, login_failures.c.subject, subjects)
        _delete_in(self.session, login_failures.c.login, subjects)


class SqlCodes:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, codes: Sequence[NewCode]) -> None:
        add_codes(self.session, [
            {**vars(c), "status": c.status.value, "channel": c.channel.value} for c in codes])

    def newest_pending(self, account_id: str, now: float) -> tuple[str, str] | None:
        return newest_pending(self.session, account_id, now)

    def activate(self, code_id: str, now: float) -> tuple[str, str, str] | None:
        return activate_code(self.session, code_id, now)

    def void_pending(self, account_id: str, *, except_code: str | None = None) -> None:
        void_pending(self.session, account_id, except_code=except_code)

    def expire(self, now: float) -> None:
        expire_codes(self.session, now)

    def delete_for(self, account_ids: Collection[str]) -> None:
        _delete_in(self.session, codes.c.account_id, account_ids)


class SqlCredentials:
    def __init__(self, session: Session) -> None:
        self.session = session

    def current(self, account_id: str) -> str | None:
        return current_password(self.session, account_id)

    def set(self, account_id: str, hash_: str, now: float) -> None:
        set_password(self.session, account_id, hash_, now)

    def delete_for(self, account_ids: Collection[str]) -> None:
        _delete_in(self.session, credentials.c.account_id, account_ids)


class SqlRequestLog:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, entries: Sequence[LoggedRequest]) -> None:
        log_requests(self.session, entries)

    def prune(self, login_keys: Collection[str], now: float) -> None:
        prune_request_log(self.session, login_keys, now)

    def last(self, login_key: str) -> list[LoggedRequest]:
        return [LoggedRequest(**{f: getattr(row, f) for f in LoggedRequest.__dataclass_fields__})
                for row in last_requests(self.session, login_key)]

    def delete_for(self, account_ids: Collection[str]) -> None:
        _delete_in(self.session, request_log.c.account_id, account_ids)

    def delete_logins(self, login_keys: Collection[str]) -> None:
        _delete_in(self.session, request_log.c.login_key, login_keys)


# --- SQL of the decision ---------------------------------------------------------------------
# Accounts by login key, processed events, rate events and codes.


def account_of(row: Any) -> Account:
    return Account(
        account_id=row.account_id, status=AccountStatus(row.status),
        tv_product=TvProduct(row.tv_product),
        login_keys={LoginKind.MOBILE: row.login_key_mobile,
                    LoginKind.PERSONAL_ACCOUNT: row.login_key_personal_account},
        sms_usable=row.sms_usable, email_usable=row.email_usable,
        mobile_enc=row.mobile_enc, mobile_masked=row.mobile_masked,
        email_enc=row.email_enc, email_masked=row.email_masked, version=row.version,
    )


def accounts_by_keys(session: Session, keys: Iterable[Mapping[LoginKind, str]]) -> list[Account]:
    """Every account whose login key of either kind is among ``keys`` (one query)."""
    mobiles = sorted({k[LoginKind.MOBILE] for k in keys if LoginKind.MOBILE in k})
    numbers = sorted({k[LoginKind.PERSONAL_ACCOUNT] for k in keys
                      if LoginKind.PERSONAL_ACCOUNT in k})
    if not mobiles and not numbers:
        return []
    query = _accounts_by_keys_query(bool(mobiles), bool(numbers), is_postgres(session))
    return [account_of(r) for r in session.execute(query, {"mobiles": mobiles, "numbers": numbers})]


# The statements of a decision and its write, built once (``services.common.db.any_of``).


@functools.cache
def _accounts_by_keys_query(mobiles: bool, numbers: bool, postgres: bool) -> Select[Any]:
    clauses = ([any_of(accounts.c.login_key_mobile, "mobiles", postgres)] if mobiles else []) + (
        [any_of(accounts.c.login_key_personal_account, "numbers", postgres)] if numbers else [])
    return select(accounts).where(or_(*clauses))


@functools.cache
def _lock_versions_query(postgres: bool) -> Select[Any]:
    return (select(accounts.c.account_id, accounts.c.version)
            .where(any_of(accounts.c.account_id, "ids", postgres)).with_for_update())


_RATE_HISTORY = (
    select(rate_events.c.at)
    .where(rate_events.c.kind == bindparam("kind"), rate_events.c.subject == bindparam("subject"),
           rate_events.c.at > bindparam("since"))
    .order_by(rate_events.c.at.desc()).limit(bindparam("newest"))
)


@functools.cache
def _void_pending_of(postgres: bool) -> Update:
    return (update(codes).where(any_of(codes.c.account_id, "ids", postgres),
                                codes.c.status == CodeStatus.PENDING.value)
            .values(status=CodeStatus.VOIDED.value))


def count_accounts(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(accounts)).scalar_one())


def rate_history(session: Session, kind: LimitKind, subject: str, since: float,
                 newest: int) -> list[float]:
    """The ``newest`` latest event times of a subject after ``since`` (index-only, bounded)."""
    rows = session.execute(_RATE_HISTORY, {"kind": kind.value, "subject": subject, "since": since,
                                           "newest": newest})
    return sorted(r.at for r in rows)


def add_rate_events(session: Session, events: Iterable[tuple[LimitKind, str, float]]) -> None:
    rows = [{"kind": k.value, "subject": s, "at": at} for k, s, at in events]
    if rows:
        session.execute(rate_events.insert(), rows)


def prune_rate_events(session: Session, before: float) -> None:
    session.execute(rate_events.delete().where(rate_events.c.at < before))


def add_codes(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Store new codes (``status`` set by the caller) after voiding their accounts' older
    pending ones."""
    if not rows:
        return
    void = _void_pending_of(is_postgres(session))
    for part in chunks(session, sorted({r["account_id"] for r in rows})):
        session.execute(void, {"ids": part})
    session.execute(codes.insert(), list(rows))


def void_pending(session: Session, account_id: str, *, except_code: str | None) -> None:
    stmt = update(codes).where(codes.c.account_id == account_id,
                               codes.c.status == CodeStatus.PENDING.value)
    if except_code is not None:
        stmt = stmt.where(codes.c.code_id != except_code)
    session.execute(stmt.values(status=CodeStatus.VOIDED.value))


def expire_codes(session: Session, now: float) -> None:
    session.execute(update(codes).where(codes.c.status == CodeStatus.PENDING.value,
                                        codes.c.expires_at <= now)
                    .values(status=CodeStatus.EXPIRED.value))


# --- Support's request log -------------------------------------------------------------------
# ``request_log`` (see ``support_tables``): written with the decisions, read by support's view.


def log_requests(session: Session, entries: Sequence[LoggedRequest]) -> None:
    insert_rows(session, request_log, [vars(e) for e in entries])


def prune_request_log(session: Session, login_keys: Iterable[str], now: float) -> None:
    """``request_log``: drops rows older than ``KEEP_S``, and for ``login_keys`` all but the newest few."""
    session.execute(delete(request_log).where(request_log.c.decided_at < now - KEEP_S))
    keys = list(login_keys)
    for start in range(0, len(keys), 500):
        ranked = select(request_log.c.id, func.row_number().over(
            partition_by=request_log.c.login_key, order_by=request_log.c.id.desc()).label("n")
        ).where(request_log.c.login_key.in_(keys[start:start + 500])).subquery()
        old = select(ranked.c.id).where(ranked.c.n > KEEP_PER_LOGIN)
        session.execute(delete(request_log).where(request_log.c.id.in_(old)))


def last_requests(session: Session, login_key: str, limit: int = KEEP_PER_LOGIN) -> list[Any]:
    query = (select(request_log).where(request_log.c.login_key == login_key)
             .order_by(request_log.c.id.desc()).limit(limit))
    return list(session.execute(query))


# --- Shared counters -------------------------------------------------------------------------
# Counts that every worker shares, each taken atomically: under the lock of the subject's row.
#
# * ``take``: sliding-window event counts (logins per client address, codes per account a day,
#   the hourly SMS budget): at most ``max_events`` in any ``window_s`` seconds, over every worker
#   (``services.common.db.take_window``).
# * ``reserve`` / ``release``: the lock-out counts of failed logins (see ``log_in``). An attempt
#   reserves its place before any hashing; it is allowed only while fewer than ``limit`` places
#   are taken and no lock stands, and the place that reaches ``limit`` sets the lock. Nothing is
#   written when a guess turns out wrong (its place stays taken); a success gives back its own
#   place and every earlier one, never a later one, so it cannot erase a lock that later failures
#   made. ``touch``: the same upsert, taking no place.
#
# Both dialects run the same statement: SQLite ≥ 3.35 and PostgreSQL share the upsert syntax.


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table))


def take(session: Session, subject: str, window: Window, now: float) -> int | None:
    """``services.common.db.take_window`` for one of the policy's windows."""
    return take_window(session, subject, max_events=window.max_events, window_s=window.window_s,
                        now=now)


def _count(session: Session, subject: str, *, step: int, limit: int, lock_s: float,
           now: float, guarded: bool, login: str | None = None) -> int | None:
    """The one upsert behind ``reserve`` (``step`` 1, ``guarded``: only while a place is free)
    and ``touch`` (``step`` 0, unguarded: the row stays as it is)."""
    f = login_failures.c
    # a lock that has ended, or a count already at the limit with no lock (the limit was lowered
    # since: it counts as locked from its last counted attempt, so it ends as a lock would)
    expired = or_(and_(f.locked_until.is_not(None), f.locked_until <= now),
                  and_(f.locked_until.is_(None), f.failures >= limit,
                       or_(f.touched_at.is_(None), f.touched_at <= now - lock_s)))
    placed = case((expired, step), else_=f.failures + step)
    until = now + lock_s
    stmt = _insert(session, login_failures).values(
        subject=subject, failures=step, locked_until=until if step >= limit else None,
        touched_at=now, login=login)
    stmt = stmt.on_conflict_do_update(
        index_elements=[f.subject],
        set_={"failures": placed,
              "locked_until": case((placed >= limit, literal(until)), (expired, None),
                                   else_=f.locked_until),
              "touched_at": now,
              **({} if login is None else {"login": login})},
        where=or_(expired, and_(f.locked_until.is_(None), f.failures < limit)) if guarded
        else literal(True),
    ).returning(f.failures)
    row = session.execute(stmt).first()
    return None if row is None else int(row.failures)


def reserve(session: Session, subject: str, *, limit: int, lock_s: float,
            now: float, login: str | None = None) -> int | None:
    """Take the next place in ``subject``'s failure count: its number (1 = first), or ``None``
    when the subject is locked or every place is taken by attempts still being verified.
    ``login``: the login's own subject, for a count per login and client address."""
    return _count(session, subject, step=1, limit=limit, lock_s=lock_s, now=now, guarded=True,
                  login=login)


def release(session: Session, subject: str, place: int, *, limit: int) -> None:
    """A success at ``place``: it and every earlier place are given back; later ones stay."""
    f = login_failures.c
    session.execute(update(login_failures).where(f.subject == subject).values(
        failures=case((f.failures > place, f.failures - place), else_=0),
        locked_until=case((f.failures - place >= limit, f.locked_until), else_=None),
    ))


def touch(session: Session, subject: str, *, now: float) -> None:
    """The statement ``reserve`` runs, taking no place: a refused attempt runs it on the login
    in place of its reservation, so a lock does not show in the time of the answer."""
    _count(session, subject, step=0, limit=2**31 - 1, lock_s=0, now=now, guarded=False)


def failures(session: Session, subject: str) -> tuple[int, float | None]:
    row = session.execute(select(login_failures).where(login_failures.c.subject == subject)).first()
    return (0, None) if row is None else (row.failures, row.locked_until)


def locked_addresses(session: Session, login: str, now: float) -> tuple[int, float | None]:
    """How many client addresses ``login`` (its own subject) is locked from now, and until when
    the last of those locks lasts."""
    f = login_failures.c
    row = session.execute(select(func.count(), func.max(f.locked_until)).where(
        f.login == login, f.locked_until > now)).one()
    return int(row[0]), row[1]


# --- Logins ----------------------------------------------------------------------------------
# SQL of logins: current passwords, pending codes, activation (failure counts: the shared counters
# above).


def newest_pending(session: Session, account_id: str, now: float) -> tuple[str, str] | None:
    """(code_id, hash) of the account's newest pending code that has not expired."""
    row = session.execute(
        select(codes.c.code_id, codes.c.hash)
        .where(codes.c.account_id == account_id, codes.c.status == CodeStatus.PENDING.value,
               codes.c.expires_at > now)
        .order_by(codes.c.created_at.desc()).limit(1)
    ).first()
    return None if row is None else (row.code_id, row.hash)


def activate_code(session: Session, code_id: str, now: float) -> tuple[str, str, str] | None:
    """Mark a pending, unexpired code active: (account id, hash, locale of the request). One
    conditional update: of simultaneous logins with that code, one activates it."""
    row = session.execute(
        update(codes).where(codes.c.code_id == code_id, codes.c.status == CodeStatus.PENDING.value,
                            codes.c.expires_at > now)
        .values(status=CodeStatus.ACTIVE.value)
        .returning(codes.c.account_id, codes.c.hash, codes.c.locale)
    ).first()
    if row is None:
        return None
    return str(row.account_id), str(row.hash), str(row.locale or "ru")


def current_password(session: Session, account_id: str) -> str | None:
    row = session.execute(select(credentials.c.password_hash)
                          .where(credentials.c.account_id == account_id)).first()
    return None if row is None else row.password_hash


def set_password(session: Session, account_id: str, hash_: str, now: float) -> None:
    updated = session.execute(update(credentials).where(credentials.c.account_id == account_id)
                              .values(password_hash=hash_, updated_at=now))
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        session.execute(credentials.insert().values(account_id=account_id, password_hash=hash_,
                                                    updated_at=now))


# --- The accounts projection -----------------------------------------------------------------
# SQL of the accounts projection (the decisions are in ``service_layer.project_accounts``).


def _row(change: ProjectAccount, now: float) -> dict[str, Any]:
    return {
        "contract_number": change.contract_number,
        "status": change.status.value,
        "tv_product": change.tv_product.value,
        "login_key_mobile": change.login_key_mobile,
        "login_key_personal_account": change.login_key_personal_account,
        "sms_usable": change.sms_usable,
        "email_usable": change.email_usable,
        "mobile_enc": change.mobile_enc,
        "mobile_masked": change.mobile_masked,
        "email_enc": change.email_enc,
        "email_masked": change.email_masked,
        "version": change.version,
        "updated_at": now,
        "holder_epoch": change.holder_epoch,
        "contacts_epoch": change.contacts_epoch,
    }


def epochs(session: Session, account_ids: Collection[str]) -> dict[str, tuple[int, int, int]]:
    if not account_ids:
        return {}
    c = accounts.c
    rows = session.execute(select(c.account_id, c.version, c.holder_epoch, c.contacts_epoch)
                           .where(c.account_id.in_(sorted(account_ids))).with_for_update())
    return {r.account_id: (r.version, r.holder_epoch, r.contacts_epoch) for r in rows}


def insert_accounts(session: Session, changes: Sequence[ProjectAccount], now: float) -> None:
    if changes:
        session.execute(accounts.insert(),
                        [{"account_id": c.account_id, **_row(c, now)} for c in changes])


def update_account(session: Session, change: ProjectAccount, now: float) -> None:
    session.execute(update(accounts).where(accounts.c.account_id == change.account_id)
                    .values(**_row(change, now)))


def delete_accounts(session: Session, account_ids: Collection[str]) -> None:
    session.execute(delete(accounts).where(accounts.c.account_id.in_(sorted(account_ids))))
