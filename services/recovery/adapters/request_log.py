"""Writes and reads of ``request_log`` (see ``support_tables``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from services.common.set_statements import insert_rows
from services.recovery.adapters.support_tables import KEEP_PER_LOGIN, KEEP_S, request_log
from services.recovery.domain.model import LoggedRequest


def record(session: Session, entries: Sequence[LoggedRequest]) -> None:
    insert_rows(session, request_log, [vars(e) for e in entries])


def prune(session: Session, login_keys: Iterable[str], now: float) -> None:
    """Drops rows older than ``KEEP_S``, and for ``login_keys`` all but the newest few."""
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
