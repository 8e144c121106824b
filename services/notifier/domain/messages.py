"""The messages a delivery sends: their texts in the request's locale (ru, en), and a message
ready for a gateway, built in memory from a delivery's decrypted fields.

A Cyrillic SMS is UCS-2: one segment holds 70 characters. The ru SMS fits one segment for
passwords up to ``SMS_ONE_SEGMENT_MAX_PASSWORD`` characters; a longer one uses the short form.
"""

from __future__ import annotations

from dataclasses import dataclass

UCS2_SEGMENT = 70
GSM7_SEGMENT = 160

_SMS = {
    "ru": "Пароль для личного кабинета: {password}. Никому его не сообщайте.",
    "en": "Your self-care portal password: {password}. Do not share it with anyone.",
}
_SMS_SHORT = {
    "ru": "Пароль: {password}. Никому его не сообщайте.",
    "en": "Password: {password}. Do not share it.",
}
SMS_ONE_SEGMENT_MAX_PASSWORD = UCS2_SEGMENT - len(_SMS["ru"].format(password=""))

_SUBJECT = {
    "ru": "Пароль для входа в личный кабинет",
    "en": "Your self-care portal password",
}
_BODY = {
    "ru": (
        "Здравствуйте!\n\n"
        "Пароль для входа в личный кабинет: {password}\n\n"
        "Никому его не сообщайте. Если вы не запрашивали пароль, позвоните в поддержку: "
        "{support_phone}.\n"
    ),
    "en": (
        "Hello,\n\n"
        "Your self-care portal password: {password}\n\n"
        "Do not share it with anyone. If you did not ask for it, call support: "
        "{support_phone}.\n"
    ),
}


@dataclass(frozen=True)
class EmailText:
    subject: str
    body: str


def sms_text(locale: str, password: str) -> str:
    lang = locale if locale in _SMS else "ru"
    text = _SMS[lang].format(password=password)
    limit = UCS2_SEGMENT if lang == "ru" else GSM7_SEGMENT
    if len(text) > limit:
        text = _SMS_SHORT[lang].format(password=password)
    return text


def email_text(locale: str, password: str, support_phone: str) -> EmailText:
    lang = locale if locale in _BODY else "ru"
    return EmailText(
        subject=_SUBJECT[lang],
        body=_BODY[lang].format(password=password, support_phone=support_phone),
    )


# the "password changed" notice (DESIGN.md "Notices"): one SMS segment with the support phone
_NOTICE_SMS = {
    "ru": "Пароль личного кабинета изменён. Не вы? Звоните {support_phone}",
    "en": "Your self-care portal password was changed. If it was not you, call {support_phone}.",
}
_NOTICE_SMS_SHORT = {
    "ru": "Пароль кабинета изменён. Не вы? Звоните {support_phone}",
    "en": "Portal password changed. Not you? Call {support_phone}",
}
_NOTICE_SUBJECT = {
    "ru": "Пароль личного кабинета изменён",
    "en": "Your self-care portal password was changed",
}
_NOTICE_BODY = {
    "ru": (
        "Здравствуйте!\n\n"
        "Пароль для входа в личный кабинет был изменён.\n\n"
        "Если это сделали не вы, позвоните в поддержку: {support_phone}.\n"
    ),
    "en": (
        "Hello,\n\n"
        "The password of your self-care portal was changed.\n\n"
        "If it was not you, call support: {support_phone}.\n"
    ),
}


# the GSM 03.38 basic character set: a text of these only is GSM-7 (160 a segment), else UCS-2 (70)
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


def segment_limit(text: str) -> int:
    return GSM7_SEGMENT if set(text) <= GSM7_BASIC else UCS2_SEGMENT


def notice_sms_text(locale: str, support_phone: str) -> str:
    """The notice, in one segment; ``ValueError`` when even the short form is too long."""
    lang = locale if locale in _NOTICE_SMS else "ru"
    for template in (_NOTICE_SMS[lang], _NOTICE_SMS_SHORT[lang]):
        text = template.format(support_phone=support_phone)
        if len(text) <= segment_limit(text):
            return text
    raise ValueError("SUPPORT_PHONE is too long for a one-segment notice")


def notice_email_text(locale: str, support_phone: str) -> EmailText:
    lang = locale if locale in _NOTICE_BODY else "ru"
    return EmailText(subject=_NOTICE_SUBJECT[lang],
                     body=_NOTICE_BODY[lang].format(support_phone=support_phone))



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
