"""Decisions as wire events: CodeIssued (contacts and password encrypted) or CodeRejected."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from schemas.events import CodeIssued, CodeRejected, CodeRejectReason
from services.common.codec import WireRecord, encode
from services.common.crypto import Keyring, code_aad
from services.recovery.domain.model import Issue, Reject

SOURCE = "/selfcare-access/recovery"


def issued(issue: Issue, *, keyring: Keyring, expires_at: float) -> WireRecord:
    code_id = issue.code_id
    event = CodeIssued(
        code_id=uuid.UUID(code_id),
        request_event_id=uuid.UUID(issue.command.request_event_id),
        account_id=uuid.UUID(issue.account.account_id),
        channel=issue.command.channel,
        destination_masked=issue.account.masked(issue.command.channel),
        destination_enc=keyring.encrypt(issue.destination, aad=code_aad(code_id, "destination")),
        password_enc=keyring.encrypt(issue.password, aad=code_aad(code_id, "password")),
        expires_at=datetime.fromtimestamp(expires_at, UTC),
        locale=issue.command.locale,
    )
    return encode(event, key=issue.account.account_id, source=SOURCE)


def rejected(reject: Reject, *, support_phone: str) -> WireRecord:
    unavailable = reject.reason is CodeRejectReason.CHANNEL_UNAVAILABLE
    event = CodeRejected(
        request_event_id=uuid.UUID(reject.command.request_event_id),
        reason=reject.reason,
        channel=reject.command.channel,
        advice="contact_support" if unavailable else None,
        support_phone=support_phone if unavailable else None,
        retry_after_s=reject.retry_after_s,
    )
    return encode(event, key=reject.command.request_event_id, source=SOURCE)
