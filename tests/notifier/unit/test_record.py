"""Recording, delivery reports and erasure on fake ports: dedupe, codes expired on arrival,
rows leased to the dispatcher while it has room, notices, carrier verdicts, tombstones."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from schemas.events import Channel, NoticeContact, PasswordChanged
from schemas.topics import NOTIFICATION_STATUS
from services.common.masking import mask_email, mask_phone
from services.notifier.domain.commands import ApplyDeliveryReport, EraseDeliveries
from services.notifier.domain.model import Delivery
from services.notifier.domain.notices import notice_aad, notice_delivery_id
from services.notifier.entrypoints.agents import to_record_code, to_record_notice
from services.notifier.service_layer.delivery_reports import ReportResult, apply_delivery_report
from services.notifier.service_layer.erase_deliveries import erase_deliveries
from services.notifier.service_layer.record_codes import record_codes
from services.notifier.service_layer.record_notices import record_notices
from tests.notifier.fakes import FakeDeliveries, FakeUnitOfWork
from tests.notifier.support import KEYRING, code_issued
from tests.notifier.unit.doubles import desk, no_flush


class FakeDirectSend:
    """The dispatcher as the recording handlers see it, with room for ``room`` rows."""

    def __init__(self, room: int) -> None:
        self.lease_s, self.worker_id, self._room = 30.0, "w-1", room
        self.accepted: list[Delivery] = []
        self.woken = 0

    def room(self) -> int:
        return self._room

    def preferred_gateway(self) -> str | None:
        return "fallback"

    def accept(self, leased: list[Delivery]) -> None:
        self.accepted.extend(leased)

    def wake(self) -> None:
        self.woken += 1


async def test_a_code_is_recorded_once_whatever_the_redeliveries() -> None:
    d = desk()
    event = code_issued(to="+79161234567")
    other_event_same_code = code_issued(to="+79161234567", code_id=event.code_id)
    await d.record(event, event)
    await d.record(event, other_event_same_code)
    assert list(d.uow.store.rows) == [str(event.code_id)]
    assert d.row(event.code_id)["state"] == "queued" and d.statuses() == []


async def test_a_code_expired_on_arrival_is_failed_without_its_secrets() -> None:
    d = desk()
    event = code_issued(to="+79160000007", expires_in_s=-1)
    await d.record(event)
    row = d.row(event.code_id)
    assert (row["state"], row["last_error"], row["password_enc"]) == ("failed", "expired", None)
    [status] = d.statuses(event.code_id)
    assert (status["status"], status["reason"], status["attempts"]) == ("failed", "expired", 0)
    assert d.metrics.deliveries.labels("sms", "code", "failed")._value.get() == 1


async def test_with_room_rows_are_leased_to_the_dispatcher_and_the_rest_queued() -> None:
    uow, direct = FakeUnitOfWork(), FakeDirectSend(room=2)
    mail = code_issued(to="ivanov@example.ru", channel=Channel.EMAIL)
    sms, queued = code_issued(to="+79161234500"), code_issued(to="+79161234501")
    placed = await record_codes([to_record_code(e) for e in (mail, sms, queued)], uow=uow,
                                metrics=desk().metrics, direct=direct)
    rows = uow.store.rows
    assert [(d.code_id, d.attempts, d.gateway, d.gateway_fresh) for d in direct.accepted] == [
        (str(mail.code_id), 1, None, False), (str(sms.code_id), 1, "fallback", True)]
    assert (rows[str(sms.code_id)]["state"], rows[str(sms.code_id)]["leased_by"]) == ("sending", "w-1")
    assert rows[str(sms.code_id)]["gateway"] == "fallback"
    assert (rows[str(queued.code_id)]["state"], placed.queued, direct.woken) == ("queued", 1, 1)


def password_changed(contacts: dict[Channel, str], *, code_id: uuid.UUID | None = None,
                     occurred_at: datetime | None = None) -> PasswordChanged:
    event_id = uuid.uuid4()
    return PasswordChanged(
        event_id=event_id, occurred_at=occurred_at or datetime.now(UTC), account_id=uuid.uuid4(),
        code_id=code_id or uuid.uuid4(), contacts=tuple(NoticeContact(
            channel=channel,
            destination_masked=mask_phone(to) if channel == Channel.SMS else mask_email(to),
            destination_enc=KEYRING.encrypt(to, aad=notice_aad(str(event_id), channel.value)),
        ) for channel, to in contacts.items()))


async def test_a_password_change_records_one_notice_per_contact_once() -> None:
    d = desk()
    event = password_changed({Channel.SMS: "+79164440000", Channel.EMAIL: "ivanov@example.ru"},
                             occurred_at=datetime.now(UTC) - timedelta(seconds=10))
    again = password_changed({Channel.SMS: "+79164440000"}, code_id=event.code_id)
    await record_notices([to_record_notice(e) for e in (event, event, again)], uow=d.uow, ttl_s=60)
    ids = {notice_delivery_id(str(event.code_id), c) for c in ("sms", "email")}
    assert set(d.uow.store.rows) == ids
    row = d.uow.store.rows[notice_delivery_id(str(event.code_id), "sms")]
    assert (row["kind"], row["status_code_id"], row["request_event_id"]) == (
        "notice", str(event.code_id), str(event.event_id))
    assert row["expires_at"] == event.occurred_at + timedelta(seconds=60)
    await d.dispatch()
    [sms] = d.sms.sent
    assert sms.to == "+79164440000" and "изменён" in sms.text
    assert {s["kind"] for s in d.statuses(event.code_id)} == {"notice"}


async def test_a_delivery_report_is_recorded_once_and_unknown_ids_are_parked() -> None:
    d = desk()
    event = code_issued(to="+79160000010")
    await d.record(event)
    await d.dispatch()

    async def report(message_id: str, status: str) -> ReportResult:
        return await apply_delivery_report(ApplyDeliveryReport(message_id=message_id, status=status),
                                           uow=d.uow, metrics=d.metrics, flush=no_flush)

    assert await report("m-1", "delivered") == ReportResult.RECORDED
    assert await report("m-1", "delivered") == ReportResult.UNCHANGED
    assert await report("nope", "delivered") == ReportResult.PARKED
    with pytest.raises(ValueError):
        await report("m-1", "read")
    assert [s["status"] for s in d.statuses(event.code_id)] == ["sent", "delivered"]
    assert d.row(event.code_id)["carrier_status"] == "delivered"
    assert d.metrics.sms_reports_by_prefix.labels("+7916", "delivered")._value.get() == 1
    assert d.uow.store.parked == {"nope": "delivered"}


async def test_a_report_that_comes_before_its_send_is_recorded_follows_the_sent_status() -> None:
    d = desk()
    event = code_issued(to="+79160000014")
    await d.record(event)
    assert await apply_delivery_report(
        ApplyDeliveryReport(message_id="m-1", status="undelivered"), uow=d.uow,
        metrics=d.metrics, flush=no_flush) == ReportResult.PARKED
    await d.dispatch()
    assert [s["status"] for s in d.statuses(event.code_id)] == ["sent", "undelivered"]
    assert d.row(event.code_id)["carrier_status"] == "undelivered" and d.uow.store.parked == {}
    assert d.metrics.sms_reports_by_prefix.labels("+7916", "undelivered")._value.get() == 1


async def test_a_report_on_a_delivery_erased_after_it_was_read_publishes_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another worker's erasure commits between the report's read of the delivery and its
    write: the write finds no row, so no status may follow the erasure's tombstone."""
    d = desk()
    event = code_issued(to="+79160000012")
    await d.record(event)
    await d.dispatch()
    read = FakeDeliveries.by_message_id

    def read_then_erased(self: FakeDeliveries, message_id: str) -> list[tuple[Delivery, str | None]]:
        found = read(self, message_id)
        self.store.rows.clear()  # the erasure, committed right after the read
        return found

    monkeypatch.setattr(FakeDeliveries, "by_message_id", read_then_erased)
    assert await apply_delivery_report(
        ApplyDeliveryReport(message_id="m-1", status="delivered"), uow=d.uow, metrics=d.metrics,
        flush=no_flush) == ReportResult.UNKNOWN
    assert [s["status"] for s in d.statuses(event.code_id)] == ["sent"]


async def test_a_verdict_that_flips_back_is_published_under_a_new_event_id() -> None:
    """delivered, undelivered, delivered: consumers dedupe by ``event_id``, so each flip needs
    its own, or the last verdict would be dropped as a copy of the first."""
    d = desk()
    event = code_issued(to="+79160000011")
    await d.record(event)
    await d.dispatch()
    ticks = iter(datetime(2026, 12, 4, 10, 0, s, tzinfo=UTC) for s in range(10))
    for status in ("delivered", "undelivered", "delivered"):
        assert await apply_delivery_report(
            ApplyDeliveryReport(message_id="m-1", status=status), uow=d.uow, metrics=d.metrics,
            flush=no_flush, clock=lambda: next(ticks)) == ReportResult.RECORDED
    verdicts = [s for s in d.statuses(event.code_id) if s["status"] != "sent"]
    assert [s["status"] for s in verdicts] == ["delivered", "undelivered", "delivered"]
    assert len({s["event_id"] for s in verdicts}) == 3
    assert d.row(event.code_id)["carrier_status"] == "delivered"


async def test_erasure_deletes_only_the_accounts_deliveries_and_is_idempotent() -> None:
    d = desk()
    erased, kept = uuid.uuid4(), uuid.uuid4()
    sms = code_issued(to="+79161234567", account_id=erased)
    email = code_issued(to="ivanov@example.ru", channel=Channel.EMAIL, account_id=erased)
    await d.record(sms, email, code_issued(to="+79031112233", account_id=kept))
    notice = password_changed({Channel.SMS: "+79161234567", Channel.EMAIL: "ivanov@example.ru"})
    notice = notice.model_copy(update={"account_id": erased})
    await record_notices([to_record_notice(notice)], uow=d.uow, ttl_s=60)
    command = EraseDeliveries(account_ids=(str(erased),))
    before = len(d.uow.store.outbox)
    assert await erase_deliveries(command, uow=d.uow) == 4
    # one tombstone per status key: the two codes, and the notice's code id (both contacts)
    staged = d.uow.store.outbox[before:]
    assert {(t, r.value) for t, r in staged} == {(NOTIFICATION_STATUS, None)}
    assert sorted(r.key or b"" for _, r in staged) == sorted(
        str(c).encode() for c in (sms.code_id, email.code_id, notice.code_id))
    assert await erase_deliveries(command, uow=d.uow) == 0
    assert len(d.uow.store.outbox) == before + 3  # nothing again
    assert [r["account_id"] for r in d.uow.store.rows.values()] == [str(kept)]
