"""Sliding windows that every worker of a service shares: at most ``max_events`` events of a
subject in any ``window_s`` seconds. Recovery counts logins per client address, codes per
account a day and the hourly SMS budget in them; registration counts support's identity checks.

Per subject a ring of ``max_events`` slots (``window_slots``) holds when each of the last
``max_events`` events leaves the window; the next event may take the slot after the newest,
which holds the oldest of them, once that one has left. The subject's ``windows`` row is
upserted first: that locks it (PostgreSQL: until commit; SQLite lets one transaction write at a
time), so simultaneous takes of one subject, on one worker or on several, go one after another.
A ring never lets in more than ``max_events``: a take needs its slot free, and the others hold at
most ``max_events - 1``; it is exact while events come in time order (workers' clocks apart can
only make it refuse a little early). When ``max_events`` changes, the ring is laid out again
from the events still inside their window (``_lay_out``).

Each service keeps the two tables in its own database (``window_tables``); the statements are
written once as text, which both dialects read alike (SQLite ≥ 3.35 shares the upsert syntax)
and which is compiled once per dialect — Core constructs cost about as much again to build
every call.
"""

from __future__ import annotations

import math
from collections.abc import Collection

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, bindparam, text
from sqlalchemy.orm import Session


def window_tables(metadata: MetaData) -> tuple[Table, Table]:
    """``windows`` (a subject's ring: the slot the next event takes, the ring's size, when the
    last of its slots leaves) and ``window_slots`` (when each counted event leaves). Slots out of
    their window may be pruned at any time (``prune``): a free slot and a missing one are alike."""
    windows = Table(
        "windows", metadata,
        Column("subject", String(80), primary_key=True),
        Column("next_slot", Integer, nullable=False),
        Column("size", Integer, nullable=False),  # the window's max_events when the ring was laid out
        Column("busy_until", Float, nullable=False),  # when the last of its slots leaves the window
        Index("ix_windows_busy_until", "busy_until"),
    )
    window_slots = Table(
        "window_slots", metadata,
        Column("subject", String(80), primary_key=True),
        Column("slot", Integer, primary_key=True),
        Column("until", Float, nullable=False),  # the event's time plus the window
        Index("ix_window_slots_until", "until"),
    )
    return windows, window_slots


_HEAD = text(
    "INSERT INTO windows (subject, next_slot, size, busy_until) VALUES (:subject, 0, :size, :now) "
    "ON CONFLICT (subject) DO UPDATE SET next_slot = windows.next_slot "
    "RETURNING next_slot, size, busy_until")
# a statement of its own after the lock: on PostgreSQL it then sees what the holder committed
_SLOT = text("SELECT until FROM window_slots WHERE subject = :subject AND slot = :slot")
_WRITE = text(
    "INSERT INTO window_slots (subject, slot, until) VALUES (:subject, :slot, :until) "
    "ON CONFLICT (subject, slot) DO UPDATE SET until = :until")
_ADVANCE = text(
    "UPDATE windows SET next_slot = :next_slot, busy_until = :busy_until WHERE subject = :subject")
# PostgreSQL: the slot read, and (when free) its write and the advance, in one round trip; the
# statement starts after the lock was taken, so its snapshot holds what the holder committed
_SLOT_PG = text(
    "WITH cur AS (SELECT until FROM window_slots WHERE subject = :subject AND slot = :slot), "
    "free AS (SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM cur WHERE until > :now)), "
    "written AS (INSERT INTO window_slots (subject, slot, until) SELECT :subject, :slot, :until "
    "FROM free ON CONFLICT (subject, slot) DO UPDATE SET until = :until RETURNING 1), "
    "advanced AS (UPDATE windows SET next_slot = :next_slot, busy_until = :busy_until "
    "WHERE subject = :subject AND EXISTS (SELECT 1 FROM free) RETURNING 1) "
    "SELECT (SELECT until FROM cur)")  # a modifying sub-statement runs whether read or not
_INSIDE = text("SELECT until FROM window_slots WHERE subject = :subject AND until > :now "
               "ORDER BY until")
_CLEAR = text("DELETE FROM window_slots WHERE subject = :subject")
_PUT = text("INSERT INTO window_slots (subject, slot, until) VALUES (:subject, :slot, :until)")
_RESIZE = text("UPDATE windows SET next_slot = :next_slot, size = :size WHERE subject = :subject")
_PRUNE_SLOTS = text("DELETE FROM window_slots WHERE until < :before")
_PRUNE_RINGS = text("DELETE FROM windows WHERE busy_until < :before")
_FORGET_SLOTS = text("DELETE FROM window_slots WHERE subject IN :subjects").bindparams(
    bindparam("subjects", expanding=True))
_FORGET_RINGS = text("DELETE FROM windows WHERE subject IN :subjects").bindparams(
    bindparam("subjects", expanding=True))
_CHUNK = 500  # subjects per statement when forgetting


def take(session: Session, subject: str, *, max_events: int, window_s: float,
         now: float) -> int | None:
    """Count one event of ``subject`` if its sliding window has room: ``None``; otherwise the
    seconds until the oldest event counted leaves the window. A limit of 0 counts nothing."""
    if max_events <= 0 or window_s <= 0:
        return None
    size = max_events
    next_slot, laid_out_for, busy_until = session.execute(
        _HEAD, {"subject": subject, "size": size, "now": now}).one()
    slot = next_slot if laid_out_for == size else _lay_out(session, subject, size, now)
    until = now + window_s
    advance = {"subject": subject, "slot": slot, "until": until, "next_slot": (slot + 1) % size,
               "busy_until": max(until, busy_until)}
    if session.get_bind().dialect.name == "postgresql":
        frees_at = session.execute(_SLOT_PG, {**advance, "now": now}).scalar()
    else:
        frees_at = session.execute(_SLOT, {"subject": subject, "slot": slot}).scalar()
        if frees_at is None or frees_at <= now:
            session.execute(_WRITE, advance)
            session.execute(_ADVANCE, advance)
    if frees_at is not None and frees_at > now:
        return max(1, math.ceil(frees_at - now))
    return None


def _lay_out(session: Session, subject: str, size: int, now: float) -> int:
    """The ring of ``subject`` laid out again for ``size`` slots from the events still inside
    their window, oldest first: the newest ``size`` in slots 0, 1, …, any older ones beyond the
    ring (slots ``size`` and up, never the next slot: they leave before every slot of the ring,
    and count again if the limit is raised). Returns the next slot."""
    inside = list(session.execute(_INSIDE, {"subject": subject, "now": now}).scalars())
    ring, older = inside[-size:], inside[:-size]
    session.execute(_CLEAR, {"subject": subject})
    rows = [{"subject": subject, "slot": i, "until": until} for i, until in enumerate(ring)]
    rows += [{"subject": subject, "slot": size + i, "until": until} for i, until in enumerate(older)]
    if rows:
        session.execute(_PUT, rows)
    next_slot = len(ring) % size
    session.execute(_RESIZE, {"subject": subject, "next_slot": next_slot, "size": size})
    return next_slot


def prune(session: Session, before: float) -> None:
    """Slots whose event left its window before ``before`` and rings all of whose events did."""
    session.execute(_PRUNE_SLOTS, {"before": before})
    session.execute(_PRUNE_RINGS, {"before": before})


def forget(session: Session, subjects: Collection[str]) -> None:
    """Every count of these subjects (an erasure)."""
    ordered = sorted(subjects)
    for i in range(0, len(ordered), _CHUNK):
        chunk = ordered[i:i + _CHUNK]
        session.execute(_FORGET_SLOTS, {"subjects": chunk})
        session.execute(_FORGET_RINGS, {"subjects": chunk})
