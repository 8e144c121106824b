"""SQL of logins: current passwords, pending codes, activation (failure counts: ``counters``)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from services.recovery.adapters.tables import codes, credentials
from services.recovery.domain.model import CodeStatus


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
