"""A message ready for a gateway, built in memory from a delivery's decrypted fields."""

from __future__ import annotations

from dataclasses import dataclass

from services.notifier.domain.templates import (
    email_text,
    notice_email_text,
    notice_sms_text,
    sms_text,
)


@dataclass(frozen=True, kw_only=True)
class OutgoingMessage:
    """``code_id`` is the delivery's id and idempotency reference (SMS ``client_ref``, email
    Message-ID): a code's id, or a notice's own id per contact."""

    code_id: str
    channel: str
    to: str
    text: str
    subject: str | None = None

    def __repr__(self) -> str:  # never show the destination or the text
        return f"OutgoingMessage(code_id={self.code_id!r}, channel={self.channel!r})"


def render(
    *, code_id: str, channel: str, locale: str, to: str, password: str, support_phone: str
) -> OutgoingMessage:
    if channel == "sms":
        return OutgoingMessage(
            code_id=code_id, channel=channel, to=to, text=sms_text(locale, password)
        )
    mail = email_text(locale, password, support_phone)
    return OutgoingMessage(
        code_id=code_id, channel=channel, to=to, text=mail.body, subject=mail.subject
    )


def render_notice(
    *, delivery_id: str, channel: str, locale: str, to: str, support_phone: str
) -> OutgoingMessage:
    if channel == "sms":
        return OutgoingMessage(code_id=delivery_id, channel=channel, to=to,
                               text=notice_sms_text(locale, support_phone))
    mail = notice_email_text(locale, support_phone)
    return OutgoingMessage(code_id=delivery_id, channel=channel, to=to, text=mail.body,
                           subject=mail.subject)
