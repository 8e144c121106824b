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
    kind: str = "code"  # code / notice
    status_code_id: str | None = None  # a notice: the code id its NotificationStatus carries
    gateway: str | None = None  # SMS: the gateway this attempt is pinned to
    gateway_fresh: bool = False  # the pin was chosen by this attempt (no earlier call could hold it)
    resumed: bool = False  # taken over from a worker that died while sending it

    @property
    def public_code_id(self) -> str:
        """The ``code_id`` of its NotificationStatus."""
        return self.status_code_id or self.code_id


@dataclass(frozen=True, kw_only=True)
class NewDelivery:
    """A delivery row as first written: queued, failed on arrival, or leased to this worker."""

    code_id: str
    request_event_id: str
    account_id: str
    channel: str
    locale: str
    destination_masked: str
    destination_enc: str | None = field(repr=False)
    password_enc: str | None = field(repr=False)
    expires_at: datetime
    state: str
    attempts: int = 0
    next_attempt_at: datetime
    lease_until: datetime | None = None
    leased_by: str | None = None
    last_error: str | None = None
    created_at: datetime
    kind: str = "code"
    status_code_id: str | None = None
    gateway: str | None = None

    def as_delivery(self, *, gateway_fresh: bool = False) -> Delivery:
        """The delivery this row describes, as a claim would hand it out."""
        return Delivery(
            code_id=self.code_id, request_event_id=self.request_event_id, channel=self.channel,
            locale=self.locale, destination_masked=self.destination_masked,
            destination_enc=self.destination_enc, password_enc=self.password_enc,
            expires_at=self.expires_at, state=self.state, attempts=self.attempts, kind=self.kind,
            status_code_id=self.status_code_id, gateway=self.gateway, gateway_fresh=gateway_fresh)


@dataclass(frozen=True, kw_only=True)
class DeliveryUpdate:
    """What to write to a delivery row after an attempt (or instead of one): its new state."""

    code_id: str
    attempts: int  # the attempt number this update is for (guards against a stale writer)
    state: str
    next_attempt_at: datetime | None = None
    message_id: str | None = None
    error: str | None = None
    reason: str | None = None  # for a failed delivery, the public reason
    gateway: str | None = None  # the pin to keep (None: free to go to either gateway next time)
    prefix: str | None = None  # an accepted SMS: the destination's prefix
