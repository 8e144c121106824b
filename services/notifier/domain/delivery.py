"""A delivery as the service layer sees it (no ORM objects leave the repository)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime


def as_utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes (stored in UTC); PostgreSQL returns aware ones."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class Delivery:
    code_id: str
    request_event_id: str
    channel: str
    locale: str
    destination_masked: str
    destination_enc: str | None = field(repr=False)
    password_enc: str | None = field(repr=False)
    expires_at: datetime
    state: str
    attempts: int
    message_id: str | None = None
    carrier_status: str | None = None


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What to write after an attempt (or instead of one)."""

    code_id: str
    attempts: int  # the attempt number this outcome is for (guards against a stale writer)
    state: str
    next_attempt_at: datetime | None = None
    message_id: str | None = None
    error: str | None = None
    reason: str | None = None  # for a failed delivery, the public reason
