"""The notifier's domain: deliveries and their states, what a gateway answered, when to try again,
and a circuit breaker per SMS gateway. No database, no gateway calls.

- **Deliveries**: states and failure reasons; a delivery as the service layer sees it (no ORM
  objects leave the repository), a row as first written, what to write after an attempt.
- **A gateway's answer**: ``SendResult``, classified (accepted / transient, definite or not /
  permanent).
- **Retries**: ``RetryPolicy``, backoff with jitter until the code expires.
- **Circuit breaker**: per SMS gateway, opened by consecutive definite failures, closed by a probe.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TypeGuard

from services.common.codec import has_control_character

# --- Deliveries ------------------------------------------------------------------------------


class DeliveryState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    RETRY = "retry"
    SENT = "sent"
    FAILED = "failed"


class FailReason(StrEnum):
    EXPIRED = "expired"
    UNDECRYPTABLE = "undecryptable"
    REJECTED = "rejected"
    RETRIES_EXHAUSTED = "retries_exhausted"  # no longer given: retries last until expiry


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
    attempts: int  # claims of the row so far, this one included
    skipped: int = 0  # attempts that ended before any gateway call (circuit open, lease lost, ...)
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

    @property
    def calls(self) -> int:
        """Gateway calls made for it so far: its NotificationStatus ``attempts``."""
        return self.attempts - self.skipped


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
    called: bool = True  # False: the attempt ended before any gateway call (not counted as one)

    def calls(self, delivery: Delivery) -> int:
        """Gateway calls made for ``delivery`` once this update is written."""
        return delivery.calls - (0 if self.called else 1)


# --- A gateway's answer ----------------------------------------------------------------------


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


MAX_RETRY_AFTER_S = 86_400.0  # a code lives far less; a longer wait is the same as this one


def message_id_usable(value: object) -> TypeGuard[str]:
    """A gateway's message id that can be stored and met again by its delivery report: text of 1
    to 64 characters, none of them a control character (PostgreSQL refuses NUL in text)."""
    return isinstance(value, str) and 0 < len(value) <= 64 and not has_control_character(value)


def bounded_retry_after(seconds: float) -> float | None:
    """A gateway's ``Retry-After`` as a wait we can schedule: at least 0, at most
    ``MAX_RETRY_AFTER_S``; ``None`` for a value that is no number (``nan``)."""
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


@dataclass(frozen=True)
class SendResult:
    """A gateway's answer, classified. ``error`` is a short code (``http_500``), never input.

    ``definite`` marks a transient failure that proves the gateway did not take the message
    (connection refused, 5xx, 429): only then may the message go to another gateway.
    """

    verdict: Verdict
    message_id: str | None = None
    retry_after_s: float | None = None
    error: str | None = None
    definite: bool = False

    @classmethod
    def accepted(cls, message_id: str) -> SendResult:
        return cls(Verdict.ACCEPTED, message_id=message_id)

    @classmethod
    def transient(
        cls, error: str, retry_after_s: float | None = None, *, definite: bool = False
    ) -> SendResult:
        return cls(Verdict.TRANSIENT, retry_after_s=retry_after_s, error=error, definite=definite)

    @classmethod
    def permanent(cls, error: str) -> SendResult:
        return cls(Verdict.PERMANENT, error=error)


# --- Retries ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped; retried until the code expires, however many
    attempts that takes."""

    initial_s: float = 1.0
    max_s: float = 60.0

    def delay(self, attempts: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (full jitter on the upper half)."""
        ceiling = min(self.max_s, self.initial_s * 2 ** min(max(attempts - 1, 0), 62))
        backoff = random.uniform(ceiling / 2, ceiling)
        return max(backoff, retry_after_s or 0.0)

    def next_attempt(
        self, *, attempts: int, now: datetime, expires_at: datetime, retry_after_s: float | None
    ) -> datetime | None:
        """When to try again, or ``None`` when no retry is left before the code expires."""
        when = now + timedelta(seconds=self.delay(attempts, retry_after_s))
        if when < expires_at:
            return when
        last = expires_at - timedelta(seconds=LAST_TRY_BEFORE_EXPIRY_S)
        return last if last > now else None  # one last try just before the code expires


LAST_TRY_BEFORE_EXPIRY_S = 1.0


# --- Circuit breaker -------------------------------------------------------------------------
# A circuit breaker per SMS gateway (DESIGN.md "SMS gateways: failover").
#
# After ``failures`` consecutive definite failures (connection refused, 5xx, 429) the circuit
# opens for ``open_s`` seconds: no call goes to that gateway. Then one probe is let through; its
# answer decides whether the circuit closes (accepted) or opens again (anything else). A time-out
# neither counts as a failure nor closes the circuit: it says nothing about the gateway's state.


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"  # the open time is over; one probe decides


@dataclass(frozen=True, eq=False)
class Permit:
    """One call's permission from a ``CircuitBreaker``; ``probe`` when it is the half-open
    circuit's one probe. Compared by identity: a probe's permit is only ever its own call's."""

    probe: bool


_CALL = Permit(probe=False)  # a closed circuit's permission: any number at once


class CircuitBreaker:
    def __init__(
        self, *, failures: int = 5, open_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitState], None] | None = None,
    ) -> None:
        self.failures, self.open_s, self.clock = failures, open_s, clock
        self.on_change = on_change
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probe: Permit | None = None  # the probe in flight, if any

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self.clock() - self._opened_at < self.open_s:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def available(self) -> bool:
        """Would a call be let through now (without taking the probe)?"""
        state = self.state
        return state == CircuitState.CLOSED or (state == CircuitState.HALF_OPEN and self._probe is None)

    def acquire(self) -> Permit | None:
        """Permission for one call: always when closed, once (the probe) when half-open;
        ``None`` when refused."""
        state = self.state
        if state == CircuitState.CLOSED:
            return _CALL
        if state == CircuitState.HALF_OPEN and self._probe is None:
            self._probe = Permit(probe=True)
            return self._probe
        return None

    def release(self, permit: Permit) -> None:
        """Give back a permission that was not used for a call: a probe's frees the probe; any
        other changes nothing (in particular, not a probe another call holds)."""
        if permit is self._probe:
            self._probe = None

    def reopens_in(self) -> float:
        """Seconds until the circuit lets a probe through (0 when it would now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.open_s - self.clock())

    def record_success(self) -> None:
        was_open = self._opened_at is not None
        self._consecutive, self._opened_at, self._probe = 0, None, None
        if was_open:
            self._changed(CircuitState.CLOSED)

    def record_failure(self) -> None:
        """A definite failure."""
        if self._probe is not None or self.state == CircuitState.HALF_OPEN:
            self._open()
            return
        if self._opened_at is not None:  # a call that started before the circuit opened
            return
        self._consecutive += 1
        if self._consecutive >= self.failures:
            self._open()

    def record_inconclusive(self, permit: Permit) -> None:
        """A time-out of the call ``permit`` let through: the gateway may have taken it. The
        probe's reopens the circuit; any other call's neither counts nor resets."""
        if permit is self._probe:
            self._open()

    def _open(self) -> None:
        self._opened_at, self._probe, self._consecutive = self.clock(), None, 0
        self._changed(CircuitState.OPEN)

    def _changed(self, state: CircuitState) -> None:
        if self.on_change is not None:
            self.on_change(state)
