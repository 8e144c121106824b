"""Failover, pins, lease takeover and notices over the SQL adapters, with fake gateways, on both
databases."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from sqlalchemy import update

from schemas.events import Channel, Locale, NoticeContact, PasswordChanged
from services.common.codec import encode
from services.common.consumer_loop import BatchRunner, RawRecord
from services.common.masking import mask_email, mask_phone
from services.notifier.adapters.repository import SqlDeliveries
from services.notifier.adapters.tables import deliveries, workers
from services.notifier.domain.model import CircuitState, SendResult
from services.notifier.domain.notices import notice_aad, notice_delivery_id
from services.notifier.entrypoints.agents import passwords_changed
from services.notifier.service_layer.dispatch import SmsRoutes
from services.notifier.service_layer.record_notices import record_notices
from tests.notifier.integration.test_handlers import Harness, make_harness
from tests.notifier.support import KEYRING, FakeGateway, code_issued

PRIMARY_DOWN = SendResult.transient("connection_ClientConnectorError", definite=True)


@pytest.fixture
async def failover(database_url: str) -> AsyncIterator[tuple[Harness, FakeGateway, FakeGateway]]:
    primary, fallback = FakeGateway(), FakeGateway()
    routes = SmsRoutes(gateways={"primary": primary, "fallback": fallback}, failures=5, open_s=30)
    harness = make_harness(database_url, routes=routes, sms=primary)
    yield harness, primary, fallback
    harness.db.close()


async def _rounds(harness: Harness, n: int) -> None:
    for _ in range(n):
        harness.db.run_sync(lambda s: s.execute(
            update(deliveries).values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))))
        await harness.dispatch()


async def test_primary_down_the_fallback_takes_the_codes_and_none_is_accepted_twice(
        failover: tuple[Harness, FakeGateway, FakeGateway]) -> None:
    harness, primary, fallback = failover
    events = [code_issued(to=f"+7916000{i:04d}") for i in range(12)]
    for e in events:
        primary.scripts[f"+7916000{events.index(e):04d}"] = [PRIMARY_DOWN]
    await harness.consume(*events)
    await _rounds(harness, 3)
    accepted = Counter(m.code_id for m in fallback.sent)
    assert set(accepted) == {str(e.code_id) for e in events} and max(accepted.values()) == 1
    statuses = [s for s in harness.statuses() if s["status"] == "sent"]
    assert len(statuses) == 12 and {s["gateway"] for s in statuses} == {"fallback"}
    assert all(harness.row(e.code_id)["gateway"] == "fallback" for e in events)


async def test_a_time_out_keeps_the_code_on_its_gateway_even_when_the_circuit_opens(
        failover: tuple[Harness, FakeGateway, FakeGateway]) -> None:
    harness, primary, fallback = failover
    slow = code_issued(to="+79161110000")
    primary.scripts["+79161110000"] = [SendResult.transient("timeout"), SendResult.accepted("p-1")]
    await harness.consume(slow)
    await harness.dispatch()
    assert harness.row(slow.code_id)["gateway"] == "primary"  # pinned by the time-out
    others = [code_issued(to=f"+7916222{i:04d}") for i in range(6)]
    for i in range(6):
        primary.scripts[f"+7916222{i:04d}"] = [PRIMARY_DOWN]
    await harness.consume(*others)
    await harness.dispatch()  # five definite failures: the primary's circuit opens
    assert harness.dispatcher.sms is not None
    assert harness.dispatcher.sms.breakers["primary"].state == CircuitState.OPEN
    await _rounds(harness, 3)
    assert str(slow.code_id) not in {m.code_id for m in fallback.sent}
    assert {m.code_id for m in fallback.sent} == {str(e.code_id) for e in others}
    assert harness.row(slow.code_id)["state"] == "retry"  # waits for the primary, whatever happens
    assert [m.code_id for m in primary.sent].count(str(slow.code_id)) == 1  # no call while open
    harness.dispatcher.sms.breakers["primary"]._opened_at = -1e9  # the open time is over
    await _rounds(harness, 3)
    [status] = [s for s in harness.statuses(slow.code_id) if s["status"] == "sent"]
    assert status["gateway"] == "primary" and status["message_id"] == "p-1"
    assert harness.dispatcher.sms.breakers["primary"].state == CircuitState.CLOSED  # the probe


async def test_a_lease_of_a_worker_that_stopped_beating_is_taken_over_at_once(database_url: str) -> None:
    dead = make_harness(database_url, worker_id=str(uuid.uuid4()), takeover_s=3)
    alive = make_harness(database_url, worker_id=str(uuid.uuid4()), takeover_s=3)
    try:
        event = code_issued(to="+79163330000")
        await dead.consume(event)
        await dead.dispatcher.beat()
        now = datetime.now(UTC)
        await dead.db.run(lambda s: SqlDeliveries(s).claim_due(
            now=now, lease_until=now + timedelta(seconds=60), limit=10,
            worker_id=dead.dispatcher.worker_id, gateway="primary"))
        await alive.dispatcher.beat()
        assert await alive.dispatch() == 0  # the owner is alive: its lease holds
        dead.db.run_sync(lambda s: s.execute(update(workers).where(
            workers.c.worker_id == dead.dispatcher.worker_id).values(
            heartbeat_at=datetime.now(UTC) - timedelta(seconds=4))))
        assert await alive.dispatch() == 1  # stopped beating: taken over long before the lease ends
        assert [m.code_id for m in alive.sms.sent] == [str(event.code_id)]
        assert alive.metrics.resends.labels("sms")._value.get() == 1
        [status] = alive.statuses(event.code_id)
        assert status["status"] == "sent" and status["attempts"] == 2 and status["gateway"] == "primary"
    finally:
        dead.db.close()
        alive.db.close()


def password_changed(contacts: dict[Channel, str], *, code_id: uuid.UUID | None = None,
                     locale: Locale = Locale.RU, event_id: uuid.UUID | None = None) -> PasswordChanged:
    """Sealed the way recovery seals a notice: ``notice:<event_id>:<channel>``."""
    event_id = event_id or uuid.uuid4()
    return PasswordChanged(
        event_id=event_id, occurred_at=datetime.now(UTC), account_id=uuid.uuid4(),
        code_id=code_id or uuid.uuid4(), locale=locale,
        contacts=tuple(NoticeContact(
            channel=channel,
            destination_masked=mask_phone(to) if channel == Channel.SMS else mask_email(to),
            destination_enc=KEYRING.encrypt(to, aad=notice_aad(str(event_id), channel.value)),
        ) for channel, to in contacts.items()),
    )


def notice_raw(value: PasswordChanged | bytes, offset: int = 0) -> RawRecord:
    record = encode(value, key="k", source="/selfcare-access/recovery") if not isinstance(
        value, bytes) else None
    return RawRecord(topic="selfcare.password.changed.v1", partition=0, offset=offset, key=b"k",
                     value=record.value if record else value,  # type: ignore[arg-type]
                     headers=record.headers if record else [])


@pytest.fixture
async def plain(database_url: str) -> AsyncIterator[Harness]:
    harness = make_harness(database_url)
    yield harness
    harness.db.close()


async def test_a_password_change_sends_every_contact_one_notice(plain: Harness) -> None:
    harness = plain
    runner: BatchRunner[PasswordChanged] = BatchRunner(
        service="notifier", topic="selfcare.password.changed.v1", model=PasswordChanged,
        handler=passwords_changed(partial(record_notices, uow=harness.uow, ttl_s=3600)),
        publisher=harness.runner.publisher, relay=harness.runner.relay,
        metrics=harness.metrics.base, max_record_bytes=65536,
    )
    event = password_changed({Channel.SMS: "+79164440000", Channel.EMAIL: "ivanov@example.ru"})
    again = password_changed({Channel.SMS: "+79164440000"}, code_id=event.code_id)  # re-published
    await runner.process([notice_raw(event), notice_raw(event, 1), notice_raw(again, 2),
                          notice_raw(b"{not json", 3)])
    dlq = [r for t, r in harness.publisher.sent if t == "selfcare.password.changed.v1.dlq"]
    assert len(dlq) == 1
    await harness.dispatch()
    [sms] = harness.sms.sent
    assert sms.to == "+79164440000" and "изменён" in sms.text and "8 800 250-08-90" in sms.text
    assert sms.code_id == notice_delivery_id(str(event.code_id), "sms")  # its client_ref
    [mail] = harness.email.sent
    assert mail.to == "ivanov@example.ru" and mail.subject == "Пароль личного кабинета изменён"
    statuses = harness.statuses(event.code_id)
    assert sorted(s["channel"] for s in statuses) == ["email", "sms"]
    assert all(s["kind"] == "notice" and s["status"] == "sent" for s in statuses)
    assert len({s["event_id"] for s in statuses}) == 2
    assert "request_event_id" not in statuses[0]


async def test_conversion_counters_by_destination_prefix(plain: Harness) -> None:
    harness = plain
    events = [code_issued(to=f"+7916555{i:04d}") for i in range(3)] + [code_issued(to="+79031230000")]
    await harness.consume(*events)
    await harness.dispatch()
    for message_id, status in (("m-1", "delivered"), ("m-2", "delivered"), ("m-3", "undelivered"),
                               ("m-4", "delivered")):
        await harness.reports(message_id=message_id, status=status)
    sent = harness.metrics.sms_sent_by_prefix
    reports = harness.metrics.sms_reports_by_prefix
    assert sent.labels("+7916")._value.get() == 3 and sent.labels("+7903")._value.get() == 1
    assert reports.labels("+7916", "delivered")._value.get() + reports.labels(
        "+7916", "undelivered")._value.get() == 3
    assert reports.labels("+7903", "delivered")._value.get() + reports.labels(
        "+7903", "undelivered")._value.get() == 1
    assert {harness.row(e.code_id)["destination_prefix"] for e in events} == {"+7916", "+7903"}
