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
    RETRIES_EXHAUSTED = "retries_exhausted"


@dataclass(frozen=True)
class SendResult:
    """A gateway's answer, classified. ``error`` is a short code (``http_500``), never input."""

    verdict: Verdict
    message_id: str | None = None
    retry_after_s: float | None = None
    error: str | None = None

    @classmethod
    def accepted(cls, message_id: str) -> SendResult:
        return cls(Verdict.ACCEPTED, message_id=message_id)

    @classmethod
    def transient(cls, error: str, retry_after_s: float | None = None) -> SendResult:
        return cls(Verdict.TRANSIENT, retry_after_s=retry_after_s, error=error)

    @classmethod
    def permanent(cls, error: str) -> SendResult:
        return cls(Verdict.PERMANENT, error=error)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped; never beyond the code's expiry."""

    initial_s: float = 1.0
    max_s: float = 60.0
    max_attempts: int = 20

    def delay(self, attempts: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (full jitter on the upper half)."""
        ceiling = min(self.max_s, self.initial_s * 2 ** max(attempts - 1, 0))
        backoff = random.uniform(ceiling / 2, ceiling)
        return max(backoff, retry_after_s or 0.0)

    def next_attempt(
        self, *, attempts: int, now: datetime, expires_at: datetime, retry_after_s: float | None
    ) -> datetime | None:
        """When to try again, or ``None`` when no retry is left before the code expires."""
        if attempts >= self.max_attempts:
            return None
        when = now + timedelta(seconds=self.delay(attempts, retry_after_s))
        return when if when < expires_at else None
