"""``normalise_mobile`` builds the usual ``+7`` and ten digits itself instead of parsing them,
and answers ``+7 9…`` with RU's mobile pattern alone: it must answer exactly as parsing every
number with ``phonenumbers`` does."""

from __future__ import annotations

import random
import re

import phonenumbers
import pytest

from services.common.logins import InvalidLogin, normalise_mobile

MOBILE_TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)


def parsed(text: str) -> str | None:
    """The reference: the same rules, with every number parsed by ``phonenumbers.parse``."""
    if not text or len(text) > 32 or re.search(r"[^0-9+\-() .]", text):
        return None
    digits = re.sub(r"\D", "", text)
    if len(digits) == 11 and digits[0] == "8" and not text.lstrip().startswith("+"):
        digits = "7" + digits[1:]
    elif len(digits) == 10 and not text.lstrip().startswith("+"):
        digits = "7" + digits
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None
    if number.country_code != 7 or phonenumbers.region_code_for_number(number) != "RU":
        return None
    if phonenumbers.number_type(number) not in MOBILE_TYPES:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalised(text: str) -> str | None:
    try:
        return normalise_mobile(text)
    except InvalidLogin:
        return None


def typed_numbers(n: int) -> list[str]:
    rnd = random.Random(20261126)
    out = [
        "+79161234567", "+7 916 123-45-67", "89161234567", "9161234567", "+78916123456",
        "+70161234567", "+7 8 916 123 45 67", "+74951234567", "+77011234567", "+7", "+70", "",
        "+7916123456", "+791612345678", "+7" + "9" * 16, "+7" + "9" * 17, "+44 20 7946 0958",
    ]
    for _ in range(n):
        prefix = rnd.choice(["+7", "8", "7", "", "+", "+8", "+70", "+79", "+78", "+77", "9"])
        body = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(0, 19)))
        out.append(prefix + body)
        prefix = rnd.choice(["+7 ", "8 ", "7", "", "+7 (9"])
        body = "".join(rnd.choice("0123456789 -()") for _ in range(rnd.randint(0, 14)))
        out.append(prefix + rnd.choice("98430760") + body)
    return out


def test_built_numbers_answer_as_parsed_ones() -> None:
    cases = typed_numbers(8_000)
    accepted = [c for c in cases if parsed(c) is not None]
    assert len(accepted) > 200  # the corpus holds many valid mobiles, not only rejections
    assert [normalised(c) for c in cases] == [parsed(c) for c in cases]


def test_every_six_digit_prefix_of_plus_7_9_answers_as_parsed() -> None:
    """RU's mobile pattern decides on at most the first six digits of the national number: each
    prefix ``9xxxxx``, with a random tail, typed as ``+7…``, as ``8…`` and as ten digits."""
    rnd = random.Random(20261206)
    cases = []
    for prefix in range(900_000, 1_000_000):
        national = f"{prefix}{rnd.randrange(10_000):04d}"
        cases.append(rnd.choice(["+7", "8", ""]) + national)
    answers = [parsed(c) for c in cases]
    assert 0 < answers.count(None) < len(cases) // 2  # both valid and refused prefixes are here
    assert [normalised(c) for c in cases] == answers


@pytest.mark.parametrize(("typed", "e164"), [
    ("+7 8 916 123 45 67", "+79161234567"),  # RU's national prefix after +7, stripped by parse
    ("+7 (916) 000-00-01", "+79160000001"),
])
def test_numbers_left_to_the_parser_still_normalise(typed: str, e164: str) -> None:
    assert normalise_mobile(typed) == e164


@pytest.mark.parametrize("typed", ["+70161234567", "+7 495 123-45-67", "+7 701 123 45 67", "+7"])
def test_numbers_that_are_no_russian_mobile_are_refused(typed: str) -> None:
    with pytest.raises(InvalidLogin):
        normalise_mobile(typed)
