"""SQL of logins: current passwords, pending codes, activation, failure counts."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from services.recovery.adapters.repository import void_pending
from services.recovery.adapters.tables import codes, credentials, login_failures
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


def activate_code(session: Session, code_id: str, now: float) -> str | None:
    """Make a pending, unexpired code the account's password; returns the account id."""
    row = session.execute(
        select(codes.c.account_id, codes.c.hash).where(
            codes.c.code_id == code_id, codes.c.status == CodeStatus.PENDING.value,
            codes.c.expires_at > now)
    ).first()
    if row is None:
        return None
    session.execute(update(codes).where(codes.c.code_id == code_id)
                    .values(status=CodeStatus.ACTIVE.value))
    void_pending(session, row.account_id, except_code=code_id)
    set_password(session, row.account_id, row.hash, now)
    return str(row.account_id)


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


def failures(session: Session, subject: str) -> tuple[int, float | None]:
    row = session.execute(select(login_failures).where(login_failures.c.subject == subject)).first()
    return (0, None) if row is None else (row.failures, row.locked_until)


def save_failures(session: Session, subject: str, count: int, locked_until: float | None) -> None:
    updated = session.execute(update(login_failures).where(login_failures.c.subject == subject)
                              .values(failures=count, locked_until=locked_until))
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        session.execute(login_failures.insert().values(subject=subject, failures=count,
                                                       locked_until=locked_until))
