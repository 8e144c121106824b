"""SQL for recovery's tables, support's ``request_log`` included (see ``support_tables``); every
function runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from schemas.events import AccountStatus, TvProduct
from services.common import store
from services.common.logins import LoginKind
from services.common.store import insert_rows
from services.recovery.adapters.support_tables import KEEP_PER_LOGIN, KEEP_S, request_log
from services.recovery.adapters.tables import (
    accounts,
    codes,
    processed_events,
    rate_events,
)
from services.recovery.domain.model import Account, CodeStatus, LimitKind, LoggedRequest


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
    mobiles = {k[LoginKind.MOBILE] for k in keys if LoginKind.MOBILE in k}
    numbers = {k[LoginKind.PERSONAL_ACCOUNT] for k in keys if LoginKind.PERSONAL_ACCOUNT in k}
    clauses = []
    if mobiles:
        clauses.append(accounts.c.login_key_mobile.in_(sorted(mobiles)))
    if numbers:
        clauses.append(accounts.c.login_key_personal_account.in_(sorted(numbers)))
    if not clauses:
        return []
    return [account_of(r) for r in session.execute(select(accounts).where(or_(*clauses)))]


def account_versions(session: Session, ids: Sequence[str]) -> dict[str, int]:
    rows = session.execute(
        select(accounts.c.account_id, accounts.c.version).where(accounts.c.account_id.in_(ids))
    )
    return {r.account_id: r.version for r in rows}


def count_accounts(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(accounts)).scalar_one())


def already_processed(session: Session, event_ids: Sequence[str]) -> set[str]:
    return store.already_processed(session, processed_events, event_ids)


def mark_processed(session: Session, event_ids: Sequence[str]) -> None:
    store.mark_processed(session, processed_events, event_ids)


def rate_history(session: Session, kind: LimitKind, subject: str, since: float,
                 newest: int) -> list[float]:
    """The ``newest`` latest event times of a subject after ``since`` (index-only, bounded)."""
    rows = session.execute(
        select(rate_events.c.at).where(
            rate_events.c.kind == kind.value, rate_events.c.subject == subject,
            rate_events.c.at > since,
        ).order_by(rate_events.c.at.desc()).limit(newest)
    )
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
    session.execute(update(codes).where(
        codes.c.account_id.in_(sorted({r["account_id"] for r in rows})),
        codes.c.status == CodeStatus.PENDING.value,
    ).values(status=CodeStatus.VOIDED.value))
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
