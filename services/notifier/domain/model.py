"""Deliveries: their states, what a gateway answered, and when to try again."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class DeliveryState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    RETRY = "retry"
    SENT = "sent"
    FAILED = "failed"


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


class FailReason(StrEnum):
    EXPIRED = "expired"
    UNDECRYPTABLE = "undecryptable"
    REJECTED = "rejected"
    RETRIES_EXHAUSTED = "retries_exhausted"  # no longer given: retries last until expiry


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
