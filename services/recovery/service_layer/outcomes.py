"""Decisions as wire events: CodeIssued (contacts and password encrypted) or CodeRejected, and
the PasswordChanged notice (every usable contact sealed for the notifier)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from schemas.events import (
    Channel,
    CodeIssued,
    CodeRejected,
    CodeRejectReason,
    Locale,
    NoticeContact,
    PasswordChanged,
)
from services.common.codec import WireRecord, encode
from services.common.crypto import Keyring, code_aad, contact_aad
from services.recovery.domain.model import Account, Issue, Reject

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


def notice_aad(event_id: str, channel: Channel) -> str:
    """Associated data of a sealed contact in PasswordChanged (the notifier opens it so)."""
    return f"notice:{event_id}:{channel.value}"


def password_changed(account: Account, *, code_id: str, locale: str, contact_keyring: Keyring,
                     delivery_keyring: Keyring) -> WireRecord | None:
    """The notice for a newly activated password: each usable contact of the account, opened
    from the projection (contact keys) and sealed again for this event (delivery keys, which the
    notifier holds); ``None`` if no contact is usable."""
    event_id = uuid.uuid4()
    contacts = []
    for channel, field, token in ((Channel.SMS, "mobile", account.mobile_enc),
                                  (Channel.EMAIL, "email", account.email_enc)):
        if not account.channel_usable(channel) or not token:
            continue
        plain = contact_keyring.decrypt(token, aad=contact_aad(account.account_id, field))
        contacts.append(NoticeContact(
            channel=channel, destination_masked=account.masked(channel),
            destination_enc=delivery_keyring.encrypt(plain, aad=notice_aad(str(event_id), channel))))
    if not contacts:
        return None
    event = PasswordChanged(
        event_id=event_id, account_id=uuid.UUID(account.account_id), code_id=uuid.UUID(code_id),
        locale=Locale(locale) if locale in {x.value for x in Locale} else Locale.RU,
        contacts=tuple(contacts))
    return encode(event, key=account.account_id, source=SOURCE)
