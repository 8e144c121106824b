from __future__ import annotations

import pytest

from services.common.settings import ConfigError
from services.notifier.domain.messages import (
    GSM7_BASIC,
    SMS_ONE_SEGMENT_MAX_PASSWORD,
    UCS2_SEGMENT,
    email_text,
    notice_email_text,
    notice_sms_text,
    render,
    sms_text,
)
from services.notifier.settings import NotifierSettings

LONGEST_PASSWORD = 32  # well beyond what recovery issues (10)


def test_ru_sms_with_a_ten_character_password_is_one_ucs2_segment() -> None:
    text = sms_text("ru", "K7M3P9Q2WX")
    assert text == "Пароль для личного кабинета: K7M3P9Q2WX. Никому его не сообщайте."
    assert len(text) <= UCS2_SEGMENT


@pytest.mark.parametrize("length", range(8, LONGEST_PASSWORD + 1))
def test_ru_sms_stays_in_one_segment_for_every_password_length(length: int) -> None:
    password = "Z" * length
    text = sms_text("ru", password)
    assert password in text
    assert len(text) <= UCS2_SEGMENT
    if length <= SMS_ONE_SEGMENT_MAX_PASSWORD:
        assert text.startswith("Пароль для личного кабинета")


def test_one_segment_bound_covers_the_issued_passwords() -> None:
    assert SMS_ONE_SEGMENT_MAX_PASSWORD >= 12


def test_en_sms_and_unknown_locale() -> None:
    assert sms_text("en", "ABCDEFGH23") == (
        "Your self-care portal password: ABCDEFGH23. Do not share it with anyone."
    )
    assert sms_text("de", "ABCDEFGH23").startswith("Пароль")


@pytest.mark.parametrize(("locale", "subject", "phrase"), [
    ("ru", "Пароль для входа в личный кабинет", "Никому его не сообщайте"),
    ("en", "Your self-care portal password", "Do not share it"),
])
def test_email_subject_and_body(locale: str, subject: str, phrase: str) -> None:
    mail = email_text(locale, "ABCDEFGH23", "8 800 250-08-90")
    assert mail.subject == subject
    assert "ABCDEFGH23" in mail.body and phrase in mail.body and "8 800 250-08-90" in mail.body


def test_outgoing_message_repr_hides_destination_and_text() -> None:
    message = render(code_id="c1", channel="sms", locale="ru", to="+79161234567",
                     password="ABCDEFGH23", support_phone="x")
    assert "+7916" not in repr(message) and "ABCDEFGH23" not in repr(message)


@pytest.mark.parametrize("phone", ["8 800 250-08-90", "+7 495 123-45-67", "0611", "+7 (800) 250-08-90 доб. 1"])
def test_the_notice_fits_one_sms_segment(phone: str) -> None:
    ru = notice_sms_text("ru", phone)
    en = notice_sms_text("en", phone)
    assert len(ru) <= 70 and phone in ru and "изменён" in ru  # UCS-2: Cyrillic
    assert phone in en and "changed" in en and set(en) - set(phone) <= GSM7_BASIC
    assert len(en) <= (160 if set(en) <= GSM7_BASIC else 70)  # a Cyrillic phone makes it UCS-2


def test_a_support_phone_too_long_for_one_segment_is_refused_at_start() -> None:
    with pytest.raises(ValueError):
        notice_sms_text("ru", "8 800 250-08-90, 8 800 250-08-91, 8 800 250-08-92")
    env = {"SELFCARE_ENV": "local", "SUPPORT_PHONE": "x" * 60, "SELFCARE_VAR_DIR": "/tmp/n-var-check"}
    with pytest.raises(ConfigError):
        NotifierSettings.from_env(env)


def test_notice_email_names_the_support_phone() -> None:
    mail = notice_email_text("en", "8 800 250-08-90")
    assert mail.subject == "Your self-care portal password was changed" and "8 800 250-08-90" in mail.body
