"""A real notifier worker on the real broker, with a real HTTP SMS gateway and a real SMTP server.

One worker serves the whole module; every test uses its own codes and destinations.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from schemas.events import Channel, Locale
from schemas.topics import CODE_ISSUED, NOTIFICATION_STATUS
from tests.notifier.integration.stack import Stack, start_stack, stop_stack
from tests.notifier.support import code_issued
from tests.support.kafka import read_all


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The scripted 500s and 429s of different tests would, interleaved, open the gateway's
    # circuit (5 in a row) and add skipped attempts to the counts asserted here; the circuit has
    # its own tests (test_failover.py, unit/test_circuit.py).
    running = start_stack(bootstrap=kafka_bootstrap, tmp=tmp_path_factory.mktemp("notifier"),
                          extra={"SMS_CIRCUIT_FAILURES": "1000"})
    yield running
    stop_stack(running)


def phone(n: int) -> str:
    return f"+7916{n:07d}"


async def test_right_text_to_the_right_destination_in_both_locales(stack: Stack) -> None:
    sms_ru = code_issued(to=phone(1001), password="RUSMS23456", locale=Locale.RU)
    sms_en = code_issued(to=phone(1002), password="ENSMS23456", locale=Locale.EN)
    mail_ru = code_issued(to="petrov@example.ru", channel=Channel.EMAIL, password="RUMAIL2345")
    mail_en = code_issued(to="smith@example.com", channel=Channel.EMAIL, password="ENMAIL2345",
                          locale=Locale.EN)
    await stack.send_codes(sms_ru, sms_en, mail_ru, mail_en, secret=[
        "RUSMS23456", "ENSMS23456", "RUMAIL2345", "ENMAIL2345", phone(1001), phone(1002),
        "petrov@example.ru", "smith@example.com"])
    found = await stack.statuses([e.code_id for e in (sms_ru, sms_en, mail_ru, mail_en)])
    for event in (sms_ru, sms_en, mail_ru, mail_en):
        [status] = found[str(event.code_id)]
        assert status["status"] == "sent" and status["attempts"] == 1
        assert status["destination_masked"] == event.destination_masked
        assert status["request_event_id"] == str(event.request_event_id)
    accepted = stack.gateway.call(lambda s: dict(s.accepted))
    assert accepted[str(sms_ru.code_id)].to == phone(1001)
    assert accepted[str(sms_ru.code_id)].text == "Пароль для личного кабинета: RUSMS23456. Никому его не сообщайте."
    assert accepted[str(sms_en.code_id)].to == phone(1002)
    assert accepted[str(sms_en.code_id)].text.startswith("Your self-care portal password: ENSMS23456.")
    [ru] = stack.smtp.handler.to("petrov@example.ru")
    assert ru["Subject"] == "Пароль для входа в личный кабинет" and ru["From"] == "selfcare@tv.example"
    assert "RUMAIL2345" in ru.get_content() and ru["Message-ID"] == f"<{mail_ru.code_id}@tv.example>"
    [en] = stack.smtp.handler.to("smith@example.com")
    assert en["Subject"] == "Your self-care portal password" and "ENMAIL2345" in en.get_content()


async def test_retries_and_their_end(stack: Stack) -> None:
    scripted = {
        phone(2001): ["500", "500", "ok"],
        phone(2002): ["429:1", "ok"],
        phone(2003): ["500"],  # until the code expires
        phone(2004): ["400"],
        phone(2005): ["slow:4", "ok"],  # beyond the 2 s time-out, then fine
    }
    for to, steps in scripted.items():
        stack.gateway.script(to, steps)
    stack.smtp.handler.scripts["busy@example.ru"] = ["451 4.3.0 try later", "250 OK"]
    stack.smtp.handler.scripts["nobody@example.ru"] = ["550 5.1.1 no such user"]
    events = {to: code_issued(to=to, expires_in_s=4 if to == phone(2003) else 600) for to in scripted}
    events["busy"] = code_issued(to="busy@example.ru", channel=Channel.EMAIL)
    events["nobody"] = code_issued(to="nobody@example.ru", channel=Channel.EMAIL)
    await stack.send_codes(*events.values(), secret=[*scripted, "busy@example.ru", "nobody@example.ru"])
    found = await stack.statuses([e.code_id for e in events.values()])

    def final(key: str) -> dict[str, object]:
        [status] = found[str(events[key].code_id)]
        return status

    assert (final(phone(2001))["status"], final(phone(2001))["attempts"]) == ("sent", 3)
    assert (final(phone(2002))["status"], final(phone(2002))["attempts"]) == ("sent", 2)
    expired = final(phone(2003))
    assert expired["status"] == "failed" and expired["reason"] == "expired"
    assert int(str(expired["attempts"])) >= 2
    rejected = final(phone(2004))
    assert (rejected["status"], rejected["reason"], rejected["attempts"]) == ("failed", "rejected", 1)
    slow = final(phone(2005))
    assert slow["status"] == "sent" and int(str(slow["attempts"])) >= 2
    assert (final("busy")["status"], final("busy")["attempts"]) == ("sent", 2)
    assert (final("nobody")["status"], final("nobody")["reason"]) == ("failed", "rejected")

    calls = stack.gateway.call(lambda s: dict(s.calls))
    assert calls[str(events[phone(2001)].code_id)] == 3
    assert calls[str(events[phone(2004)].code_id)] == 1
    log = stack.gateway.call(lambda s: list(s.call_log))
    times_429 = [t for ref, _, t in log if ref == str(events[phone(2002)].code_id)]
    assert times_429[1] - times_429[0] >= 0.9  # Retry-After: 1 honoured (backoff alone is <= 0.3 s)
    accepted = stack.gateway.call(lambda s: set(s.accepted))
    assert str(events[phone(2005)].code_id) in accepted
    assert str(events[phone(2003)].code_id) not in accepted
    assert len(stack.smtp.handler.to("busy@example.ru")) == 1
    assert stack.smtp.handler.to("nobody@example.ru") == []


async def test_a_failing_destination_does_not_delay_the_others(stack: Stack) -> None:
    account = uuid.uuid4()  # one key: every record on the same partition, the slow one first
    stack.gateway.script(phone(3000), ["slow:4"])
    stuck = code_issued(to=phone(3000), account_id=account, expires_in_s=12)
    others = [code_issued(to=phone(3001 + i), account_id=account) for i in range(20)]
    await stack.send_codes(stuck, *others, secret=[phone(3000), *(phone(3001 + i) for i in range(20))])
    found = await stack.statuses([e.code_id for e in others], timeout_s=30)
    assert all(s[0]["status"] == "sent" for s in found.values())
    current = await read_all(stack.bootstrap, stack.prefix + NOTIFICATION_STATUS)
    assert not any(json.loads(r.value or b"{}")["code_id"] == str(stuck.code_id) for r in current), (
        "the stuck code must still be retrying while the others are already sent"
    )
    [status] = (await stack.statuses([stuck.code_id], timeout_s=30))[str(stuck.code_id)]
    assert status["status"] == "failed" and status["reason"] == "expired"


async def test_malformed_records_go_to_the_dlq_and_the_stream_goes_on(stack: Stack) -> None:
    good = code_issued(to=phone(4001))
    broken = json.loads(code_issued(to=phone(4002)).model_dump_json())
    broken["channel"] = "pigeon"
    await stack.send_codes((b"k1", b"{not json"), (b"k2", json.dumps(broken).encode()), good,
                           secret=[phone(4001), phone(4002)])
    dlq = await read_all(stack.bootstrap, stack.prefix + CODE_ISSUED + ".dlq",
                         until=lambda out: len(out) >= 2, timeout_s=30)
    classes = sorted(r.headers["dlq_error_class"] for r in dlq)
    assert classes == ["invalid_event", "invalid_json"]
    assert all(r.headers["dlq_original_topic"] == stack.prefix + CODE_ISSUED for r in dlq)
    assert all(r.headers["dlq_original_offset"].isdigit() for r in dlq)
    [status] = (await stack.statuses([good.code_id]))[str(good.code_id)]
    assert status["status"] == "sent"


async def test_undecryptable_and_expired_codes_fail_without_a_send(stack: Stack) -> None:
    tampered = [code_issued(to=phone(5001 + i), tamper=t) for i, t in enumerate(["wrong_key", "swapped", "bitflip"])]
    expired = code_issued(to=phone(5010), expires_in_s=-5)
    await stack.send_codes(*tampered, expired, secret=[phone(5001), phone(5002), phone(5003), phone(5010)])
    found = await stack.statuses([e.code_id for e in [*tampered, expired]])
    for event in tampered:
        [status] = found[str(event.code_id)]
        assert (status["status"], status["reason"]) == ("failed", "undecryptable")
    [status] = found[str(expired.code_id)]
    assert (status["status"], status["reason"], status["attempts"]) == ("failed", "expired", 0)
    calls = stack.gateway.call(lambda s: dict(s.calls))
    assert not any(str(e.code_id) in calls for e in [*tampered, expired])


async def test_a_redelivered_code_is_sent_once(stack: Stack) -> None:
    event = code_issued(to=phone(6001))
    same_code_new_event = code_issued(to=phone(6001), code_id=event.code_id)
    await stack.send_codes(event, event, same_code_new_event, secret=[phone(6001)])
    await stack.statuses([event.code_id])
    sentinel = code_issued(to=phone(6002))
    await stack.send_codes(event, sentinel, secret=[phone(6002)])
    await stack.statuses([sentinel.code_id])
    await asyncio.sleep(1)
    assert stack.gateway.call(lambda s: s.calls[str(event.code_id)]) == 1
    found = await stack.statuses([event.code_id])
    assert [s["status"] for s in found[str(event.code_id)]] == ["sent"]


async def test_delivery_reports_become_statuses_and_bad_calls_change_nothing(stack: Stack) -> None:
    event = code_issued(to=phone(7001))
    await stack.send_codes(event, secret=[phone(7001)])
    [sent] = (await stack.statuses([event.code_id]))[str(event.code_id)]
    message_id = str(sent["message_id"])
    assert stack.post_report(b"{broken") == 400
    assert stack.post_report(json.dumps({"message_id": message_id, "status": "read"}).encode()) == 400
    # a report of no message of ours (yet): parked for a day, in case its send is being recorded
    assert stack.post_report(json.dumps({"message_id": "m-unknown", "status": "delivered"}).encode()) == 202
    assert stack.post_report(json.dumps({"message_id": message_id, "status": "delivered"}).encode(),
                             token="wrong") == 401
    assert stack.post_report(json.dumps({"message_id": message_id, "status": "delivered"}).encode(),
                             token=None) == 401
    before = await read_all(stack.bootstrap, stack.prefix + NOTIFICATION_STATUS)
    assert [json.loads(r.value or b"{}")["status"] for r in before
            if json.loads(r.value or b"{}")["code_id"] == str(event.code_id)] == ["sent"]
    assert stack.post_report(json.dumps({"message_id": message_id, "status": "delivered"}).encode()) == 200
    found = await stack.statuses([event.code_id], want={"delivered"})
    statuses = found[str(event.code_id)]
    assert [s["status"] for s in statuses] == ["sent", "delivered"]
    assert statuses[1]["message_id"] == message_id and statuses[1]["destination_masked"] == "+7******7001"


async def test_nothing_secret_in_clear_on_topics_or_in_the_log(stack: Stack) -> None:
    sms = code_issued(to=phone(8001), password="SECRETPW99")
    mail = code_issued(to="secret.person@example.org", channel=Channel.EMAIL, password="SECRETPW98")
    await stack.send_codes(sms, mail, secret=[phone(8001), "secret.person@example.org", "SECRETPW99",
                                              "SECRETPW98", "K7M3P9Q2WX"])
    await stack.statuses([sms.code_id, mail.code_id])
    raw = b""
    for topic in (NOTIFICATION_STATUS, CODE_ISSUED + ".dlq"):
        for record in await read_all(stack.bootstrap, stack.prefix + topic, idle_s=0.5):
            raw += (record.key or b"") + (record.value or b"") + repr(record.headers).encode()
    log = stack.worker.log_text().encode()
    assert len(raw) > 1000 and len(log) > 1000
    for secret in stack.secrets:
        for form in {secret, secret.lstrip("+"), secret[2:]}:
            assert form.encode() not in raw, "a secret is in clear on a topic"
            assert form.encode() not in log, "a secret is in clear in the worker log"


def test_metrics_are_exposed(stack: Stack) -> None:
    with urllib.request.urlopen(stack.worker.base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'notifier_deliveries_total{channel="sms",kind="code",status="sent"}' in text
    assert 'notifier_deliveries_total{channel="sms",kind="code",status="failed"}' in text
    assert 'notifier_retries_total{channel="sms"}' in text
    assert 'notifier_gateway_request_seconds_count{channel="email"}' in text
    assert 'notifier_sms_sent_by_prefix_total{prefix="+7916"}' in text  # the prefix, for conversion
    assert not re.search(r"\+?7916\d", text), "more of a phone number than its prefix in metrics"
