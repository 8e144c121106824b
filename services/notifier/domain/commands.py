"""Commands: what the notifier is asked to do, in its own terms (built at the edge from the wire
records by ``entrypoints.agents`` and ``entrypoints.webhook``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, kw_only=True)
class RecordCode:
    """Deliver a one-time password (from ``CodeIssued``): recorded now, sent by the dispatcher."""

    event_id: str
    code_id: str
    request_event_id: str
    account_id: str
    channel: str
    locale: str
    destination_masked: str
    destination_enc: str = field(repr=False)
    password_enc: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True, kw_only=True)
class NoticeContact:
    channel: str
    destination_masked: str
    destination_enc: str = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class RecordNotice:
    """Tell every linked contact that the password was changed (from ``PasswordChanged``)."""

    event_id: str
    occurred_at: datetime
    code_id: str
    account_id: str
    locale: str
    contacts: tuple[NoticeContact, ...]


@dataclass(frozen=True, kw_only=True)
class ApplyDeliveryReport:
    """A carrier's verdict on an SMS (the gateway's report on ``POST /api/v1/sms-status``)."""

    message_id: str
    status: str  # delivered / undelivered


@dataclass(frozen=True, kw_only=True)
class EraseDeliveries:
    """Forget erased accounts' deliveries (their tombstones on ``selfcare.account.changed.v1``)."""

    account_ids: tuple[str, ...]
