"""Writes and reads of ``request_log`` (see ``support_tables``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from services.common.set_statements import insert_rows
from services.recovery.adapters.support_tables import KEEP_PER_LOGIN, KEEP_S, request_log
from services.recovery.domain.model import Decision, Issue


def record(session: Session, decisions: Sequence[Decision], *, login_key: Callable[[str], str],
           now: float) -> set[str]:
    """Adds a row per decision; returns the login keys written."""
    rows: list[dict[str, Any]] = []
    for d in decisions:
        issued = isinstance(d, Issue)
        rows.append({
            "login_key": login_key(d.command.login), "request_event_id": d.command.request_event_id,
            "account_id": d.account.account_id if isinstance(d, Issue) else None,
            "channel": d.command.channel.value, "outcome": "issued" if issued else "rejected",
            "reason": None if isinstance(d, Issue) else d.reason.value,
            "retry_after_s": None if isinstance(d, Issue) else d.retry_after_s,
            "code_id": d.code_id if isinstance(d, Issue) else None,
            "requested_at": d.command.requested_at, "decided_at": now,
        })
    insert_rows(session, request_log, rows)
    return {row["login_key"] for row in rows}


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
