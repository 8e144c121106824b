"""SMS-pumping guards of the decisions, and the PasswordChanged notice staged on activation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import replace

import pytest

from schemas.events import Channel
from services.common.crypto import Keyring, code_aad
from services.recovery.domain.model import Window
from services.recovery.service_layer.codes import notice_aad
from tests.recovery.builders import POLICY, mobile_of, request
from tests.recovery.conftest import account_changed
from tests.recovery.integration.harness import Harness, harness

OPEN = replace(POLICY, login_cooldown=Window(max_events=1, window_s=0),
               per_destination=Window(max_events=100, window_s=600),
               per_ip=Window(max_events=1000, window_s=300))


def rejected(h: Harness) -> list[dict[str, object]]:
    return [v for t, v in h.staged() if t == "selfcare.code.rejected.v1"]


def issued(h: Harness) -> list[dict[str, object]]:
    return [v for t, v in h.staged() if t == "selfcare.code.issued.v1"]


def count(metric: object, channel: str = "sms") -> float:
    return float(metric.labels(channel)._value.get())  # type: ignore[attr-defined]


@pytest.fixture
def make(database_url: str, keyring: Keyring) -> Iterator[object]:
    made: list[Harness] = []

    def build(policy: object, clock: object = None) -> Harness:
        h = harness(database_url, keyring, policy, clock=clock)  # type: ignore[arg-type]
        made.append(h)
        return h

    yield build
    for h in made:
        h.db.close()


async def test_mobile_outside_the_prefixes_is_channel_unavailable(make: object) -> None:
    h: Harness = make(replace(OPEN, sms_prefixes=("+7495", "+7499")))  # type: ignore[operator]
    acc = account_changed(h.keyring, email="someone@example.org")  # mobile +7916…
    await h.accounts(acc)
    login = mobile_of(h.keyring, acc)
    await h.requests(request(login))
    (reject,) = rejected(h)
    assert reject["reason"] == "channel_unavailable"
    assert reject["advice"] == "contact_support" and reject["support_phone"] == "8 800 250-08-90"
    assert count(h.metrics.sms_prefix_refused) == 1
    await h.requests(request(login, channel="email"))  # e-mail is not concerned
    assert len(issued(h)) == 1


async def test_codes_per_account_a_day(make: object, caplog: pytest.LogCaptureFixture) -> None:
    h: Harness = make(replace(OPEN, account_daily=Window(max_events=3, window_s=86400)))  # type: ignore[operator]
    acc = account_changed(h.keyring, email="someone@example.org")
    await h.accounts(acc)
    login = mobile_of(h.keyring, acc)
    for channel in ("sms", "email", "sms"):
        await h.requests(request(login, channel=channel))
        h.clock.advance(10)
    with caplog.at_level(logging.WARNING):
        await h.requests(request(login))
    assert len(issued(h)) == 3
    (reject,) = rejected(h)
    assert reject["reason"] == "rate_limited" and 0 < int(reject["retry_after_s"]) <= 86400  # type: ignore[call-overload]
    assert count(h.metrics.account_daily_limit) == 1
    assert any(r.levelno == logging.WARNING and getattr(r, "guard", "") == "account_daily"
               for r in caplog.records)
    h.clock.advance(86400)
    await h.requests(request(login))
    assert len(issued(h)) == 4


async def test_hourly_sms_budget_over_all_accounts_with_two_workers(
        make: object, caplog: pytest.LogCaptureFixture) -> None:
    policy = replace(OPEN, sms_hourly=Window(max_events=7, window_s=3600))
    a: Harness = make(policy)  # type: ignore[operator]
    b: Harness = make(policy, a.clock)  # type: ignore[operator]
    accounts = [account_changed(a.keyring, email=f"u{i}@example.org") for i in range(20)]
    await a.accounts(*accounts)
    logins = [mobile_of(a.keyring, acc) for acc in accounts]
    with caplog.at_level(logging.WARNING):
        await asyncio.gather(*[(a if i % 2 else b).requests(request(login))
                               for i, login in enumerate(logins)])
    assert len(issued(a)) == 7 and len(rejected(a)) == 13
    assert {r["reason"] for r in rejected(a)} == {"rate_limited"}
    assert count(a.metrics.sms_budget_exceeded) + count(b.metrics.sms_budget_exceeded) == 13
    assert any(getattr(r, "guard", "") == "sms_budget" for r in caplog.records)
    await a.requests(request(logins[0], channel="email"))  # e-mail is not in the SMS budget
    assert len(issued(a)) == 8
    a.clock.advance(3601)
    await b.requests(request(logins[1]))
    assert len(issued(a)) == 9


async def activate(h: Harness, email: str | None) -> tuple[str, str, dict[str, object], str]:
    acc = account_changed(h.keyring, email=email)
    await h.accounts(acc)
    login = mobile_of(h.keyring, acc)
    await h.requests(request(login, locale="en"))
    (code,) = issued(h)[-1:]
    password = h.keyring.decrypt(str(code["password_enc"]),
                                 aad=code_aad(str(code["code_id"]), "password"))
    return login, password, code, str(acc.account_id)


def notices(h: Harness) -> list[dict[str, object]]:
    return [v for t, v in h.staged() if t == "selfcare.password.changed.v1"]


async def test_first_use_of_a_new_password_stages_one_sealed_notice(make: object) -> None:
    h: Harness = make(OPEN)  # type: ignore[operator]
    login, password, code, account_id = await activate(h, "someone@example.org")
    assert await h.login(login, password) == account_id
    (notice,) = notices(h)
    assert notice["account_id"] == account_id and notice["code_id"] == code["code_id"]
    assert notice["locale"] == "en"
    contacts = notice["contacts"]
    assert isinstance(contacts, list)
    opened = {c["channel"]: h.keyring.decrypt(c["destination_enc"], aad=notice_aad(
        str(notice["event_id"]), Channel(c["channel"]))) for c in contacts}
    assert opened == {"sms": login, "email": "someone@example.org"}
    masked = {c["channel"]: c["destination_masked"] for c in contacts}
    assert masked["sms"] == code["destination_masked"] and "*" in masked["email"]
    # the unchanged password again: no notice
    assert await h.login(login, password) == account_id
    assert len(notices(h)) == 1


async def test_simultaneous_first_logins_stage_one_notice(make: object) -> None:
    h: Harness = make(OPEN)  # type: ignore[operator]
    login, password, _, account_id = await activate(h, None)
    # as many as the lock-out lets through at once (each attempt takes a place before hashing)
    results = await asyncio.gather(*[h.login(login, password) for _ in range(3)])
    assert results == [account_id] * 3
    (notice,) = notices(h)
    assert [c["channel"] for c in notice["contacts"]] == ["sms"]  # type: ignore[attr-defined]
