"""Decisions as records: the wire events CodeIssued (contacts and password encrypted) or
CodeRejected, the PasswordChanged notice (every usable contact sealed for the notifier), the
stored codes and support's request log; and what they count: metrics of the decided requests,
with a warning to ops for each SMS-pumping guard that refused some."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
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
from services.recovery.adapters.metrics import RecoveryMetrics
from services.recovery.domain.commands import IssueCode
from services.recovery.domain.model import (
    Account,
    CodeStatus,
    Decision,
    Guard,
    Issue,
    LoggedRequest,
    NewCode,
    Reject,
)

SOURCE = "/selfcare-access/recovery"
log = logging.getLogger(__name__)


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


def reveal(keyring: Keyring, account: Account, command: IssueCode) -> str:
    """The destination of a code request, opened from the projection (contact keys)."""
    field = "mobile" if command.channel is Channel.SMS else "email"
    token = account.mobile_enc if field == "mobile" else account.email_enc
    return keyring.decrypt(token or "", aad=contact_aad(account.account_id, field))


def new_codes(issues: list[Issue], hashes: list[str], *, expires_at: float,
              now: float) -> list[NewCode]:
    """The codes to store; of several issued to one account, only the newest stays pending."""
    newest = {i.account.account_id: i.code_id for i in issues}
    return [NewCode(
        code_id=i.code_id, account_id=i.account.account_id,
        request_event_id=i.command.request_event_id, hash=hash_,
        status=(CodeStatus.PENDING if newest[i.account.account_id] == i.code_id
                else CodeStatus.VOIDED),
        channel=i.command.channel, locale=i.command.locale.value, expires_at=expires_at,
        created_at=now,
    ) for i, hash_ in zip(issues, hashes, strict=True)]


def logged(decision: Decision, *, login_key: str, now: float) -> LoggedRequest:
    issued = isinstance(decision, Issue)
    return LoggedRequest(
        login_key=login_key, request_event_id=decision.command.request_event_id,
        account_id=decision.account.account_id if isinstance(decision, Issue) else None,
        channel=decision.command.channel.value, outcome="issued" if issued else "rejected",
        reason=None if isinstance(decision, Issue) else decision.reason.value,
        retry_after_s=None if isinstance(decision, Issue) else decision.retry_after_s,
        code_id=decision.code_id if isinstance(decision, Issue) else None,
        requested_at=decision.command.requested_at, decided_at=now)


def report_decisions(metrics: RecoveryMetrics, decisions: Sequence[Decision]) -> None:
    for decision in decisions:
        if isinstance(decision, Issue):
            metrics.codes_issued.labels(decision.command.channel.value).inc()
        else:
            metrics.codes_rejected.labels(decision.reason.value).inc()
    guarded = [d for d in decisions if isinstance(d, Reject) and d.guard]
    counted = {Guard.SMS_PREFIX: metrics.sms_prefix_refused,
               Guard.ACCOUNT_DAILY: metrics.account_daily_limit,
               Guard.SMS_BUDGET: metrics.sms_budget_exceeded}
    for guard in Guard:
        hits = [r for r in guarded if r.guard is guard]
        if hits:
            for hit in hits:
                counted[guard].labels(hit.command.channel.value).inc()
            log.warning("code requests refused against SMS pumping", extra={
                "guard": guard.value, "requests": len(hits)})
