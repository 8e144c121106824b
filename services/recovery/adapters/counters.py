"""Counters that every worker shares, each changed by one atomic statement.

* ``take``: fixed-window event counts (logins per client address, codes per account a day, the
  hourly SMS budget). One ``INSERT … ON CONFLICT DO UPDATE … WHERE … RETURNING``: a row comes
  back only when the event fits, so simultaneous callers, on one worker or on several sharing
  PostgreSQL, can never take more than the window allows.
* ``reserve`` / ``release``: the lock-out counts of failed logins (see ``log_in``). An attempt
  reserves its place before any hashing; it is allowed only while fewer than ``limit`` places
  are taken and no lock stands, and the place that reaches ``limit`` sets the lock. Nothing is
  written when a guess turns out wrong (its place stays taken); a success gives back its own
  place and every earlier one, never a later one, so it cannot erase a lock that later failures
  made. ``touch``: the same upsert, taking no place.

Both dialects run the same statement: SQLite ≥ 3.35 and PostgreSQL share the upsert syntax.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import and_, case, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.recovery.adapters.tables import counters, login_failures
from services.recovery.domain.model import Window


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table))


def take(session: Session, subject: str, window: Window, now: float) -> int | None:
    """Count one event of ``subject`` if its window has room: ``None``; otherwise the seconds
    until the window ends."""
    if window.max_events <= 0 or window.window_s <= 0:
        return None
    c = counters.c
    expired = c.window_end <= now
    stmt = _insert(session, counters).values(subject=subject, count=1,
                                              window_end=now + window.window_s)
    stmt = stmt.on_conflict_do_update(
        index_elements=[c.subject],
        set_={"count": case((expired, 1), else_=c.count + 1),
              "window_end": case((expired, now + window.window_s), else_=c.window_end)},
        where=or_(expired, c.count < window.max_events),
    ).returning(c.count)
    if session.execute(stmt).first() is not None:
        return None
    ends = session.execute(select(c.window_end).where(c.subject == subject)).scalar_one()
    return max(1, math.ceil(ends - now))


def prune(session: Session, before: float) -> None:
    session.execute(counters.delete().where(counters.c.window_end < before))


def _count(session: Session, subject: str, *, step: int, limit: int, lock_s: float,
           now: float, guarded: bool) -> int | None:
    """The one upsert behind ``reserve`` (``step`` 1, ``guarded``: only while a place is free)
    and ``touch`` (``step`` 0, unguarded: the row stays as it is)."""
    f = login_failures.c
    expired = and_(f.locked_until.is_not(None), f.locked_until <= now)
    placed = case((expired, step), else_=f.failures + step)
    until = now + lock_s
    stmt = _insert(session, login_failures).values(
        subject=subject, failures=step, locked_until=until if step >= limit else None,
        touched_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=[f.subject],
        set_={"failures": placed,
              "locked_until": case((placed >= limit, literal(until)), (expired, None),
                                   else_=f.locked_until),
              "touched_at": now},
        where=or_(expired, and_(f.locked_until.is_(None), f.failures < limit)) if guarded
        else literal(True),
    ).returning(f.failures)
    row = session.execute(stmt).first()
    return None if row is None else int(row.failures)


def reserve(session: Session, subject: str, *, limit: int, lock_s: float,
            now: float) -> int | None:
    """Take the next place in ``subject``'s failure count: its number (1 = first), or ``None``
    when the subject is locked or every place is taken by attempts still being verified."""
    return _count(session, subject, step=1, limit=limit, lock_s=lock_s, now=now, guarded=True)


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
