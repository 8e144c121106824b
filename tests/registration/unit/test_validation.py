"""Normalisation and validation of a link (pure domain, no I/O)."""

from __future__ import annotations

import json
import random

import pytest
from email_validator import EmailNotValidError, validate_email

from schemas.events import ContractLinked, ContractRejectReason
from services.common.logins import LoginKind
from services.registration.domain.validation import LinkRejected, normalise_email, normalise_link
from services.registration.entrypoints.agents import InboundContractLinked, to_link
from tests.registration.events import linked


def command(**kw: object) -> object:
    return to_link(ContractLinked.model_validate_json(json.dumps(linked("77-1", **kw))))


@pytest.mark.parametrize("typed", [
    "+7 916 123-45-67", "8 (916) 123-45-67", "7 916 1234567", "89161234567", "+7(916)123 45 67",
])
def test_russian_mobiles_as_people_type_them_become_e164(typed: str) -> None:
    assert normalise_link(command(mobile=typed)).mobile == "+79161234567"


@pytest.mark.parametrize(("kw", "reason"), [
    ({"mobile": "+7 916 ABC-45-67"}, ContractRejectReason.INVALID_MOBILE),
    ({"mobile": "+44 20 7946 0958"}, ContractRejectReason.INVALID_MOBILE),
    ({"mobile": "+7 916 12"}, ContractRejectReason.INVALID_MOBILE),
    ({"mobile": "+7 495 123-45-67"}, ContractRejectReason.INVALID_MOBILE),  # a landline
    ({"email": "ivanov@"}, ContractRejectReason.INVALID_EMAIL),
    ({"email": "ivanov.example.ru"}, ContractRejectReason.INVALID_EMAIL),
    ({"email": "a b@example.ru"}, ContractRejectReason.INVALID_EMAIL),
    ({"account": "12AB5678"}, ContractRejectReason.INVALID_PERSONAL_ACCOUNT),
    ({"account": "12345"}, ContractRejectReason.INVALID_PERSONAL_ACCOUNT),
    ({"account": "1" * 21}, ContractRejectReason.INVALID_PERSONAL_ACCOUNT),
])
def test_invalid_data_is_rejected_with_its_reason(kw: dict[str, str], reason: ContractRejectReason) -> None:
    with pytest.raises(LinkRejected) as caught:
        normalise_link(command(**kw))  # type: ignore[arg-type]
    assert caught.value.reason is reason


def test_email_domain_is_lower_cased_and_the_rest_normalised() -> None:
    link = normalise_link(command(email="Ivanov@Example.RU", account="1234 5678 9012",
                                  passport=("45 10", "123456"), name="  Иванов   Иван "))
    assert link.email == "Ivanov@example.ru"
    assert link.personal_account == "123456789012"
    assert link.passport == "4510123456"
    assert link.full_name == "Иванов Иван"


@pytest.mark.parametrize(("product", "kind"), [
    ("interactive", LoginKind.MOBILE), ("linear", LoginKind.PERSONAL_ACCOUNT),
    ("satellite", LoginKind.PERSONAL_ACCOUNT),
])
def test_the_login_comes_from_the_product_table(product: str, kind: LoginKind) -> None:
    assert normalise_link(command(product=product)).login_kind is kind


@pytest.mark.parametrize("number", ["   ", " 77-1", "77 1", "77-1\n", "№77"])
def test_a_contract_number_must_look_like_one(number: str) -> None:
    with pytest.raises(ValueError):
        InboundContractLinked.model_validate_json(json.dumps({**linked("x"), "contract_number": number}))


LOCAL_PARTS = [
    "ivanov", "Ivan.Petrov", "a", "a..b", ".a", "a.", "x+y", "o'neil", "user_1", "Postmaster",
    "ABUSE", "иван", '"quoted"', "a b", "a@b", "", "a" * 64, "a" * 65, "b" * 63 + ".c",
    "x!#$%&'*+/=?^_`{|}~-", "a\tb", "tëst",
]
DOMAINS = [
    "example.ru", "Example.RU", "xn--80ak6aa92e.com", "пример.рф", "ПРИМЕР.РФ", "localhost", "a",
    "a.b", "-a.ru", "a-.ru", "a..ru", ".ru", "ru.", "ex_ample.ru", "exa mple.ru", "[127.0.0.1]",
    "1.2.3.4", "a" * 63 + ".ru", "a" * 64 + ".ru", ("b" * 60 + ".") * 4 + "ru", "ab--c.ru",
    "xn--ab.ru", "test", "invalid", "example.invalid", "x.test", "ｅｘａｍｐｌｅ.ru", "example。ru",
    "mail.ru.", "", "@example.ru", "中国.cn", "x.onion", "mail.local",
]


def validated(text: str) -> str | None:
    """The reference: every address through email-validator whole."""
    try:
        valid = validate_email(text.strip(), check_deliverability=False)
    except EmailNotValidError:
        return None
    return f"{valid.local_part}@{valid.domain.lower()}"


def normalised(text: str) -> str | None:
    try:
        return normalise_email(text)
    except LinkRejected:
        return None


def test_email_checked_per_domain_answers_as_email_validator_does() -> None:
    rnd = random.Random(20261126)
    cases = [f"{local}@{domain}" for local in LOCAL_PARTS for domain in DOMAINS]
    for _ in range(3000):
        local = rnd.choice(LOCAL_PARTS) + rnd.choice(["", "1", ".x", "Z"])
        cases.append(rnd.choice(["", " "]) + f"{local}@{rnd.choice(DOMAINS)}" + rnd.choice(["", " "]))
    cases += ["no-at-sign", "a@b@c.ru", "Ivan <ivan@example.ru>",
              "a" * 200 + "@" + "b" * 60 + ".ru", "a" * 64 + "@" + ("b" * 62 + ".") * 3 + "ru"]
    accepted = [c for c in cases if validated(c) is not None]
    assert 300 < len(accepted) < len(cases) - 300  # many of both
    assert [normalised(c) for c in cases] == [validated(c) for c in cases]
