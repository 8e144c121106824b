"""The texts of the messages, in the request's locale (ru, en).

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
