"""Notices through a real worker: PasswordChanged records produced the way recovery seals them,
to a fallback-equipped SMS set-up and a real SMTP server; malformed records to the DLQ."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.events import Channel, Locale
from schemas.topics import NOTIFICATION_STATUS, PASSWORD_CHANGED
from services.common.codec import encode
from services.notifier.domain.notices import notice_delivery_id
from tests.notifier.integration.stack import Stack, start_stack, stop_stack
from tests.notifier.integration.test_routing import password_changed
from tests.support.kafka import produce, read_all


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(bootstrap=kafka_bootstrap, tmp=tmp_path, fallback=True)
    yield running
    stop_stack(running)


async def test_every_contact_gets_one_notice_and_bad_records_are_dead_lettered(stack: Stack) -> None:
    ru = password_changed({Channel.SMS: "+79167770001", Channel.EMAIL: "petrov@example.ru"})
    en = password_changed({Channel.SMS: "+79167770002"}, locale=Locale.EN)
    again = password_changed({Channel.SMS: "+79167770001"}, code_id=ru.code_id)  # re-published
    # two contacts of one channel: its notice id and sealing are derived from the channel, so
    # the second would be dropped unseen; the record is refused whole
    twice = password_changed({Channel.EMAIL: "sidorov@example.ru"})
    records = [encode(e, key=str(e.account_id), source="/selfcare-access/recovery")
               for e in (ru, en, again, twice)]
    raw = [(r.key, r.value, r.headers) for r in records]
    doubled = json.loads(raw[3][1] or b"{}")
    doubled["contacts"] *= 2
    raw[3] = (raw[3][0], json.dumps(doubled).encode(), raw[3][2])
    await produce(stack.bootstrap, stack.prefix + PASSWORD_CHANGED,
                  [raw[0], (b"k", b"{not json"), (b"k", None), raw[1], raw[0], raw[2], raw[3]])
    consumed = await read_all(stack.bootstrap, stack.prefix + NOTIFICATION_STATUS,
                              until=lambda r: len(r) >= 3, timeout_s=40)
    await asyncio.sleep(1)  # room for any (wrong) extra send

    sms = stack.gateway.call(lambda s: {m.to: m for m in s.accepted.values()})
    assert set(sms) == {"+79167770001", "+79167770002"}
    assert sms["+79167770001"].text.startswith("Пароль личного кабинета изменён")
    assert len(sms["+79167770001"].text) <= 70 and "8 800 250-08-90" in sms["+79167770001"].text
    assert sms["+79167770002"].text.startswith("Your self-care portal password was changed")
    assert sms["+79167770001"].client_ref == notice_delivery_id(str(ru.code_id), "sms")
    assert stack.gateway.call(lambda s: (s.duplicates, sum(s.calls.values()))) == (0, 2)
    [mail] = stack.smtp.handler.to("petrov@example.ru")
    assert mail["Subject"] == "Пароль личного кабинета изменён"

    statuses = [json.loads(r.value or b"{}") for r in consumed]
    assert {s["code_id"] for s in statuses} == {str(ru.code_id), str(en.code_id)}
    assert len(statuses) == 3 and {s["kind"] for s in statuses} == {"notice"}
    assert {s["status"] for s in statuses} == {"sent"}
    assert {s["gateway"] for s in statuses if s["channel"] == "sms"} == {"primary"}

    # the tombstone (what an erasure leaves on this topic) is taken quietly, not dead-lettered
    dlq = await read_all(stack.bootstrap, stack.prefix + PASSWORD_CHANGED + ".dlq",
                         until=lambda out: len(out) >= 2, timeout_s=20)
    dead = {r.headers["dlq_error_class"]: r for r in dlq}  # from two partitions: in any order
    assert len(dlq) == 2 and {c: r.value for c, r in dead.items()} == {
        "invalid_json": b"{not json", "invalid_event": raw[3][1]}
    assert dead["invalid_event"].headers["dlq_error_message"] == "contacts: one_contact_per_channel"
    assert stack.smtp.handler.to("sidorov@example.ru") == []
    raw_statuses = b"".join(r.value or b"" for r in await read_all(
        stack.bootstrap, stack.prefix + NOTIFICATION_STATUS, timeout_s=3))
    for secret in ("+79167770001", "79167770002", "petrov@example.ru", "sidorov@example.ru"):
        assert secret.encode() not in raw_statuses
        assert secret.encode() not in stack.worker.log_text().encode()
    assert json.loads(raw[0][1])["contacts"][0]["destination_masked"] == "+7******0001"
