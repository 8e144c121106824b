"""The notifier's handlers, dispatcher and delivery reports over the SQL adapters, with fake gateways,
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from sqlalchemy import select, update

from schemas.events import Channel, CodeIssued, Locale
from services.common.consumer_loop import BatchRunner
from services.common.db import Database
from services.common.metrics import ServiceMetrics
from services.common.migrations import migrate
from services.common.publish import OutboxRelay
from services.common.retention import Pruner
from services.notifier.adapters.repository import SqlDeliveries, SqlUnitOfWork, SqlWorkers
from services.notifier.adapters.tables import (
    MIGRATIONS,
    PARKED_KEEP_S,
    deliveries,
    early_reports,
    outbox,
    prunable,
)
from services.notifier.domain.commands import ApplyDeliveryReport
from services.notifier.domain.messages import OutgoingMessage
from services.notifier.domain.model import Delivery, DeliveryUpdate, RetryPolicy, SendResult, as_utc
from services.notifier.entrypoints.agents import codes_issued, to_record_code
from services.notifier.service_layer.delivery_reports import ReportResult, apply_delivery_report
from services.notifier.service_layer.dispatch import Dispatcher, SmsRoutes
from services.notifier.service_layer.metrics import NotifierMetrics
from services.notifier.service_layer.record_codes import record_codes
from tests.notifier.support import KEYRING, FakeGateway, FakePublisher, code_issued, raw


@dataclass
class Harness:
    db: Database
    runner: BatchRunner[CodeIssued]
    dispatcher: Dispatcher
    sms: FakeGateway
    email: FakeGateway
    publisher: FakePublisher
    uow: SqlUnitOfWork
    relay: OutboxRelay
    metrics: NotifierMetrics

    async def consume(self, *events: CodeIssued | bytes) -> None:
        await self.runner.process([raw(e, offset=i) for i, e in enumerate(events)])

    async def reports(self, *, message_id: str, status: str) -> ReportResult:
        return await apply_delivery_report(
            ApplyDeliveryReport(message_id=message_id, status=status), uow=self.uow,
            metrics=self.metrics, flush=self.relay.flush)

    async def dispatch(self) -> int:
        started = await self.dispatcher.step()
        await self.dispatcher.drain()
        return started

    def statuses(self, code_id: uuid.UUID | None = None) -> list[dict[str, object]]:
        out = [json.loads(r.value) for t, r in self.publisher.sent
               if t == "selfcare.notification.status.v1" and r.value is not None]  # not tombstones
        return [s for s in out if code_id is None or s["code_id"] == str(code_id)]

    def row(self, code_id: uuid.UUID) -> dict[str, object]:
        def _get(session: object) -> dict[str, object]:
            found = session.execute(  # type: ignore[attr-defined]
                select(deliveries).where(deliveries.c.code_id == str(code_id))
            ).first()
            return dict(found._mapping)
        return self.db.run_sync(_get)  # type: ignore[arg-type]

    def make_due(self, code_id: uuid.UUID) -> None:
        self.db.run_sync(lambda s: s.execute(
            update(deliveries).where(deliveries.c.code_id == str(code_id))
            .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        ))


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    h = make_harness(database_url)
    yield h
    h.db.close()


def make_harness(database_url: str, *, routes: SmsRoutes | None = None, sms: FakeGateway | None = None,
                 takeover_s: float = 6.0, worker_id: str | None = None) -> Harness:
    db = Database(url=database_url, name="notifier-test")
    migrate(db.engine, MIGRATIONS)
    base = ServiceMetrics("notifier")
    metrics = NotifierMetrics(base)
    publisher = FakePublisher()
    relay = OutboxRelay(db=db, table=outbox, publisher=publisher)  # type: ignore[arg-type]
    uow = SqlUnitOfWork(db=db, hand_over=relay.committed)
    sms, email = sms or FakeGateway(), FakeGateway()
    dispatcher = Dispatcher(
        uow=uow, keyring=KEYRING,
        gateways={"sms": sms, "email": email}, metrics=metrics,
        policy=RetryPolicy(initial_s=30, max_s=60), flush=relay.flush,
        support_phone="8 800 250-08-90", lease_s=30, sms=routes, takeover_s=takeover_s,
        worker_id=worker_id,
    )
    runner: BatchRunner[CodeIssued] = BatchRunner(
        service="notifier", topic="selfcare.code.issued.v1", model=CodeIssued,
        handler=codes_issued(partial(record_codes, uow=uow, metrics=metrics)),
        publisher=publisher,  # type: ignore[arg-type]
        relay=relay, metrics=base, max_record_bytes=65536,
    )
    return Harness(db, runner, dispatcher, sms, email, publisher, uow, relay, metrics)


async def test_sms_and_email_are_sent_once_with_the_right_text(harness: Harness) -> None:
    sms = code_issued(to="+79161234567", password="ABCDEFGH23")
    mail = code_issued(to="ivanov@example.ru", channel=Channel.EMAIL, locale=Locale.EN, password="QWERTYUP45")
    await harness.consume(sms, mail)
    assert await harness.dispatch() == 2
    [sent_sms] = harness.sms.sent
    assert sent_sms.to == "+79161234567" and "ABCDEFGH23" in sent_sms.text
    assert sent_sms.code_id == str(sms.code_id)
    [sent_mail] = harness.email.sent
    assert sent_mail.to == "ivanov@example.ru" and sent_mail.subject == "Your self-care portal password"
    [status] = harness.statuses(sms.code_id)
    assert status["status"] == "sent" and status["attempts"] == 1
    assert status["destination_masked"] == "+7******4567" and status["message_id"] == "m-1"
    row = harness.row(sms.code_id)
    assert row["state"] == "sent" and row["password_enc"] is None and row["destination_enc"] is None
    assert await harness.dispatch() == 0  # nothing due any more


async def test_redelivered_event_and_second_event_for_one_code_do_not_send_twice(harness: Harness) -> None:
    event = code_issued(to="+79161234567")
    again = code_issued(to="+79161234567", code_id=event.code_id)
    await harness.consume(event, event)
    await harness.consume(event, again)
    await harness.dispatch()
    assert len(harness.sms.sent) == 1
    await harness.consume(event)
    await harness.dispatch()
    assert len(harness.sms.sent) == 1 and len(harness.statuses(event.code_id)) == 1


async def test_transient_failure_is_retried_later_without_blocking_others(harness: Harness) -> None:
    flaky = code_issued(to="+79160000001")
    fine = code_issued(to="+79160000002")
    harness.sms.scripts["+79160000001"] = [SendResult.transient("http_500"), SendResult.accepted("m-x")]
    await harness.consume(flaky, fine)
    await harness.dispatch()
    assert [s["status"] for s in harness.statuses(fine.code_id)] == ["sent"]
    assert harness.statuses(flaky.code_id) == []
    row = harness.row(flaky.code_id)
    assert row["state"] == "retry" and row["attempts"] == 1 and row["last_error"] == "http_500"
    assert await harness.dispatch() == 0  # backoff (30 s here) not over yet
    harness.make_due(flaky.code_id)
    await harness.dispatch()
    [status] = harness.statuses(flaky.code_id)
    assert status["status"] == "sent" and status["attempts"] == 2


async def test_retries_end_when_the_code_expires(harness: Harness) -> None:
    event = code_issued(to="+79160000003", expires_in_s=5)  # next retry (>= 15 s) is past expiry
    harness.sms.scripts["+79160000003"] = [SendResult.transient("http_429", retry_after_s=1)]
    await harness.consume(event)
    await harness.dispatch()
    row = harness.row(event.code_id)  # one last try, a second before the code expires
    assert row["state"] == "retry" and harness.statuses(event.code_id) == []
    assert as_utc(row["next_attempt_at"]) == event.expires_at - timedelta(seconds=1)  # type: ignore[arg-type]
    harness.db.run_sync(lambda s: s.execute(update(deliveries).values(  # it is due: the last second
        expires_at=datetime.now(UTC) + timedelta(seconds=0.9))))
    harness.make_due(event.code_id)
    await harness.dispatch()
    [status] = harness.statuses(event.code_id)
    assert status["status"] == "failed" and status["reason"] == "expired" and status["attempts"] == 2


async def test_retries_go_on_past_twenty_attempts_until_the_code_expires(harness: Harness) -> None:
    event = code_issued(to="+79160000004")
    harness.sms.scripts["+79160000004"] = [SendResult.transient("timeout")]
    await harness.consume(event)
    for _ in range(25):
        harness.make_due(event.code_id)
        await harness.dispatch()
    assert harness.statuses(event.code_id) == [] and harness.row(event.code_id)["state"] == "retry"
    assert harness.row(event.code_id)["attempts"] == 25
    harness.db.run_sync(lambda s: s.execute(update(deliveries).values(
        expires_at=datetime.now(UTC) + timedelta(seconds=0.5))))
    harness.make_due(event.code_id)
    await harness.dispatch()  # fails again, and no retry fits before the expiry
    [status] = harness.statuses(event.code_id)
    assert status == {**status, "status": "failed", "reason": "expired", "attempts": 26}
    assert len(harness.sms.sent) == 26


async def test_permanent_rejection_fails_at_once(harness: Harness) -> None:
    event = code_issued(to="+79160000005")
    harness.sms.scripts["+79160000005"] = [SendResult.permanent("http_400")]
    await harness.consume(event)
    await harness.dispatch()
    [status] = harness.statuses(event.code_id)
    assert status["status"] == "failed" and status["reason"] == "rejected"
    assert harness.row(event.code_id)["last_error"] == "http_400"


@pytest.mark.parametrize("tamper", ["wrong_key", "swapped", "bitflip"])
async def test_undecryptable_payload_fails_without_a_send(harness: Harness, tamper: str) -> None:
    event = code_issued(to="+79160000006", tamper=tamper)
    await harness.consume(event)
    await harness.dispatch()
    assert harness.sms.sent == []
    [status] = harness.statuses(event.code_id)
    assert status["status"] == "failed" and status["reason"] == "undecryptable"
    assert status["attempts"] == 0  # gateway calls: none


async def test_code_expired_on_arrival_is_not_sent(harness: Harness) -> None:
    event = code_issued(to="+79160000007", expires_in_s=-1)
    await harness.consume(event)
    await harness.dispatch()
    assert harness.sms.sent == []
    [status] = harness.statuses(event.code_id)
    assert status["status"] == "failed" and status["reason"] == "expired" and status["attempts"] == 0


async def test_turns_skipped_while_the_circuit_is_open_are_stored_and_not_reported_as_calls(
        database_url: str) -> None:
    routes = SmsRoutes(gateways={"primary": FakeGateway()}, failures=1, open_s=30)
    h = make_harness(database_url, routes=routes, sms=routes.gateways["primary"])  # type: ignore[arg-type]
    try:
        event = code_issued(to="+79160000017")
        h.sms.scripts["+79160000017"] = [
            SendResult.transient("connection_refused", definite=True), SendResult.accepted("m-17")]
        await h.consume(event)
        await h.dispatch()
        for _ in range(2):  # the circuit is open: claimed, no call
            h.make_due(event.code_id)
            await h.dispatch()
        routes.breakers["primary"]._opened_at = -1e9  # the open time is over
        h.make_due(event.code_id)
        await h.dispatch()
        assert [m.code_id for m in h.sms.sent] == [str(event.code_id)] * 2
        [status] = [s for s in h.statuses(event.code_id) if s["status"] == "sent"]
        assert status["attempts"] == 2
        assert (h.row(event.code_id)["attempts"], h.row(event.code_id)["skipped"]) == (4, 2)
    finally:
        h.db.close()


async def test_malformed_record_goes_to_the_dlq_and_the_rest_is_processed(harness: Harness) -> None:
    good = code_issued(to="+79160000008")
    await harness.consume(b"{not json", b'{"event_id": "x"}', good)
    dlq = [r for t, r in harness.publisher.sent if t == "selfcare.code.issued.v1.dlq"]
    assert len(dlq) == 2
    await harness.dispatch()
    assert len(harness.sms.sent) == 1


async def test_expired_lease_is_claimed_again_and_the_stale_outcome_is_ignored(harness: Harness) -> None:
    event = code_issued(to="+79160000009")
    await harness.consume(event)
    now = datetime.now(UTC)
    first = await harness.db.run(lambda s: SqlDeliveries(s).claim_due(
        now=now, lease_until=now + timedelta(seconds=30), limit=10))
    assert [d.attempts for d in first] == [1]
    assert await harness.dispatch() == 0  # leased: nobody else sends it
    harness.db.run_sync(lambda s: s.execute(
        update(deliveries).values(lease_until=datetime.now(UTC) - timedelta(seconds=1))))
    await harness.dispatch()  # the lease expired: sent again, with the same client_ref
    assert [m.code_id for m in harness.sms.sent] == [str(event.code_id)]

    stale = DeliveryUpdate(code_id=str(event.code_id), attempts=1, state="failed", reason="expired")
    written = await harness.db.run(lambda s: SqlDeliveries(s).finish([stale], datetime.now(UTC)))
    assert written == [] and harness.row(event.code_id)["state"] == "sent"


async def test_a_late_heartbeat_makes_a_worker_dead_to_the_others_not_to_itself(
        harness: Harness) -> None:
    event = code_issued(to="+79160000011")
    await harness.consume(event)
    now = datetime.now(UTC)
    late = now - timedelta(seconds=30)
    await harness.db.run(lambda s: SqlWorkers(s).beat(worker_id="w-1", now=late))
    [leased] = await harness.db.run(lambda s: SqlDeliveries(s).claim_due(
        now=now, lease_until=now + timedelta(seconds=60), limit=10, worker_id="w-1"))
    stale_before = now - timedelta(seconds=6)

    def claim(worker_id: str) -> list[Delivery]:
        return harness.db.run_sync(lambda s: SqlDeliveries(s).claim_due(
            now=now, lease_until=now + timedelta(seconds=60), limit=10, worker_id=worker_id,
            stale_before=stale_before))

    assert claim("w-1") == []  # its own send: in flight, or its answer not yet recorded
    [taken] = claim("w-2")
    assert (taken.code_id, taken.resumed, taken.attempts) == (leased.code_id, True, 2)


async def test_delivery_reports_become_statuses(harness: Harness) -> None:
    event = code_issued(to="+79160000010")
    await harness.consume(event)
    await harness.dispatch()
    assert await harness.reports(message_id="m-1", status="delivered") == ReportResult.RECORDED
    assert await harness.reports(message_id="m-1", status="delivered") == ReportResult.UNCHANGED
    assert await harness.reports(message_id="nope", status="delivered") == ReportResult.PARKED
    with pytest.raises(ValueError):
        await harness.reports(message_id="m-1", status="read")
    assert [s["status"] for s in harness.statuses(event.code_id)] == ["sent", "delivered"]
    assert harness.row(event.code_id)["carrier_status"] == "delivered"


async def test_an_sms_report_never_applies_to_an_email(harness: Harness) -> None:
    """An SMS gateway's report names its own message ids; an email with that Message-ID (sent
    before the report or after it) is not its message."""
    first = code_issued(to="first@example.ru", channel=Channel.EMAIL)
    await harness.consume(first)
    await harness.dispatch()
    message_id = str(harness.row(first.code_id)["message_id"])
    assert await harness.reports(message_id=message_id, status="delivered") == ReportResult.PARKED
    assert harness.row(first.code_id)["carrier_status"] is None
    second = code_issued(to="second@example.ru", channel=Channel.EMAIL)
    message_id = "m-2"  # the email fake's next message id
    assert await harness.reports(message_id=message_id, status="undelivered") == ReportResult.PARKED
    await harness.consume(second)
    await harness.dispatch()
    assert harness.row(second.code_id)["message_id"] == message_id
    assert harness.row(second.code_id)["carrier_status"] is None
    for event in (first, second):
        assert [s["status"] for s in harness.statuses(event.code_id)] == ["sent"]


async def test_a_report_before_its_send_is_recorded_is_applied_when_it_is(harness: Harness) -> None:
    """The gateway answered the call and the carrier's verdict came before the recorder wrote the
    answer: the report is parked, then applied in the transaction that records the send, after
    its ``sent`` status; a report of no message of ours is dropped after a day."""
    event = code_issued(to="+79160000024")
    await harness.consume(event)
    assert await harness.reports(message_id="m-1", status="undelivered") == ReportResult.PARKED
    assert await harness.reports(message_id="m-1", status="delivered") == ReportResult.PARKED
    assert await harness.reports(message_id="m-404", status="delivered") == ReportResult.PARKED
    await harness.dispatch()  # the gateway answers m-1; the recorder writes it
    assert harness.row(event.code_id)["carrier_status"] == "delivered"  # the later report won
    assert [s["status"] for s in harness.statuses(event.code_id)] == ["sent", "delivered"]
    assert harness.metrics.sms_reports_by_prefix.labels("+7916", "delivered")._value.get() == 1
    assert await harness.reports(message_id="m-1", status="delivered") == ReportResult.UNCHANGED
    parked = harness.db.run_sync(lambda s: s.execute(select(early_reports.c.message_id)).all())
    assert [r.message_id for r in parked] == ["m-404"]
    pruned = PromCounter("rows_pruned_total", "test", ["table"], registry=CollectorRegistry())
    pruner = Pruner(db=harness.db, tables=prunable, retention_days=30, pruned=pruned)
    assert await pruner.prune(time.time() + PARKED_KEEP_S - 60) == 0
    assert await pruner.prune(time.time() + PARKED_KEEP_S + 60) == 1  # a day, whatever the retention
    assert harness.db.run_sync(lambda s: s.execute(select(early_reports)).all()) == []


async def test_a_message_id_given_by_both_gateways_is_applied_to_neither(
        database_url: str) -> None:
    """Each gateway numbers its own messages and both report to one webhook: when both gave the
    same id, whose verdict a report is cannot be told, and another subscriber's verdict is
    worse than none."""
    primary = FakeGateway(scripts={"+79160000021": [SendResult.accepted("42")]})
    fallback = FakeGateway(scripts={"+79160000022": [SendResult.accepted("42")]})
    routes = SmsRoutes(gateways={"primary": primary, "fallback": fallback}, failures=5, open_s=30)
    h = make_harness(database_url, routes=routes, sms=primary)
    try:
        a = code_issued(to="+79160000021")
        await h.consume(a)
        await h.dispatch()
        for _ in range(5):  # the primary's circuit opens: the next code goes to the fallback
            routes.breakers["primary"].record_failure()
        b = code_issued(to="+79160000022")
        await h.consume(b)
        await h.dispatch()
        assert (h.row(a.code_id)["gateway"], h.row(b.code_id)["gateway"]) == ("primary", "fallback")
        assert await h.reports(message_id="42", status="undelivered") == ReportResult.AMBIGUOUS
        assert h.row(a.code_id)["carrier_status"] is None is h.row(b.code_id)["carrier_status"]
        assert [s["status"] for s in h.statuses()] == ["sent", "sent"]
    finally:
        h.db.close()


async def test_one_report_sent_to_two_workers_at_once_is_recorded_once(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway retries a report it thinks lost, and the two copies reach two workers
    together: the second waits for the first's row and finds the verdict there (one status, one
    event id), instead of both reading no verdict and both publishing it."""
    a, b = make_harness(postgres_url), make_harness(postgres_url)
    try:
        event = code_issued(to="+79160000023")
        await a.consume(event)
        await a.dispatch()
        message_id = str(a.row(event.code_id)["message_id"])
        read, first = SqlDeliveries.by_message_id, threading.Event()

        def read_then_linger(self: SqlDeliveries, mid: str) -> list[tuple[Delivery, str | None]]:
            found = read(self, mid)
            if not first.is_set():  # the first reader holds its transaction a while
                first.set()
                time.sleep(1.0)
            return found

        monkeypatch.setattr(SqlDeliveries, "by_message_id", read_then_linger)
        results = await asyncio.gather(a.reports(message_id=message_id, status="delivered"),
                                       b.reports(message_id=message_id, status="delivered"))
        assert sorted(results) == [ReportResult.RECORDED, ReportResult.UNCHANGED]
        delivered = [s for h in (a, b) for s in h.statuses(event.code_id)
                     if s["status"] == "delivered"]
        assert len(delivered) == 1
    finally:
        a.db.close()
        b.db.close()


@dataclass
class SlowGateway(FakeGateway):
    """Holds every call until ``release`` is set."""

    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, message: OutgoingMessage) -> SendResult:
        self.sent.append(message)
        await self.release.wait()
        return SendResult.accepted(f"m-{message.code_id[:8]}")


async def test_graceful_stop_records_calls_in_flight_and_hands_back_waiting_rows(harness: Harness) -> None:
    slow = SlowGateway()
    dispatcher = Dispatcher(
        uow=harness.uow, keyring=KEYRING, gateways={"sms": slow},
        metrics=harness.dispatcher.metrics, policy=RetryPolicy(), flush=harness.dispatcher.recorder.flush,
        support_phone="x", max_in_flight=2, shutdown_grace_s=5,
    )
    events = [code_issued(to=f"+7916000{i:04d}") for i in range(4)]
    await harness.consume(*events)
    running = asyncio.create_task(dispatcher.run())
    while len(slow.sent) < 2:
        await asyncio.sleep(0.01)
    running.cancel()  # two calls in flight, two rows waiting for a slot
    await asyncio.sleep(0.1)
    slow.release.set()  # the calls in flight finish within the grace period
    with contextlib.suppress(asyncio.CancelledError):
        await running
    in_flight = {m.code_id for m in slow.sent}
    states = {str(e.code_id): harness.row(e.code_id)["state"] for e in events}
    assert len(in_flight) == 2
    assert all(states[c] == "sent" for c in in_flight)
    waiting = [e for e in events if str(e.code_id) not in in_flight]
    for event in waiting:
        row = harness.row(event.code_id)
        assert (row["state"], row["last_error"]) == ("retry", "shutdown")
    assert {s["code_id"] for s in harness.statuses()} == in_flight


async def test_an_update_written_twice_counts_once(harness: Harness) -> None:
    """A stop that cancelled the wait for the recorder's transaction, which then committed,
    writes the same batch again: the second write finds the row no longer leased and changes
    nothing (a skipped attempt counted twice would make the status's ``attempts`` wrong)."""
    event = code_issued(to="+79160000019")
    await harness.consume(event)
    now = datetime.now(UTC)
    [claimed] = await harness.db.run(lambda s: SqlDeliveries(s).claim_due(
        now=now, lease_until=now + timedelta(seconds=30), limit=10))
    skipped = DeliveryUpdate(code_id=str(event.code_id), attempts=claimed.attempts, state="retry",
                             next_attempt_at=now, error="circuit_open", called=False)
    for expected in ([skipped], []):
        written = await harness.db.run(lambda s: SqlDeliveries(s).finish([skipped], now))
        assert written == expected
    row = harness.row(event.code_id)
    assert (row["state"], row["attempts"], row["skipped"]) == ("retry", 1, 1)


async def test_a_crashing_gateway_adapter_means_a_retry_not_a_stuck_row(harness: Harness) -> None:
    class CrashingGateway(FakeGateway):
        async def send(self, message: OutgoingMessage) -> SendResult:
            raise RuntimeError("bug")

    harness.dispatcher.sms = SmsRoutes(gateways={"primary": CrashingGateway()})
    event = code_issued(to="+79160000011")
    await harness.consume(event)
    await harness.dispatch()
    row = harness.row(event.code_id)
    assert (row["state"], row["last_error"], row["lease_until"]) == ("retry", "internal_error", None)


def test_workers_starting_together_migrate_once(database_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import create_engine

    from services.common.migrations import migrate
    from services.notifier.adapters.tables import MIGRATIONS

    def run_migrations(engine: object) -> list[str]:
        return migrate(engine, MIGRATIONS)  # type: ignore[arg-type]

    engines = [create_engine(database_url) for _ in range(4)]
    if database_url.startswith("sqlite"):
        run_migrations(engines[0])
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run_migrations, engines))
    applied = sorted(results, key=len)
    assert applied[:3] == [[], [], []]
    assert applied[3] == [] or applied[3][-1] == MIGRATIONS.head()
    for engine in engines:
        engine.dispose()


async def test_with_room_new_codes_are_leased_when_recorded_and_sent_without_a_claim(
        harness: Harness) -> None:
    dispatcher = harness.dispatcher
    direct = partial(record_codes, uow=harness.uow, metrics=dispatcher.metrics, direct=dispatcher)
    first, second, third = (code_issued(to=f"+7916123450{i}") for i in range(3))
    dispatcher.max_in_flight = 1  # room for two leased rows waiting here
    await direct([to_record_code(e) for e in (first, second, third)])
    leased = [harness.row(e.code_id) for e in (first, second)]
    assert [(r["state"], r["attempts"]) for r in leased] == [("sending", 1)] * 2
    assert all(r["lease_until"] is not None for r in leased)
    assert harness.row(third.code_id)["state"] == "queued"  # no room: the next claim takes it
    await dispatcher.drain()
    assert sorted(m.to for m in harness.sms.sent) == ["+79161234500", "+79161234501"]
    assert await harness.dispatch() == 1  # the claim finds only the queued one
    assert len(harness.sms.sent) == 3 and len(set(m.code_id for m in harness.sms.sent)) == 3
    assert [s["attempts"] for s in harness.statuses()] == [1, 1, 1]
    await direct([to_record_code(first)])  # redelivered: neither leased nor sent again
    await dispatcher.drain()
    assert len(harness.sms.sent) == 3



async def test_an_update_the_database_refuses_does_not_hold_back_the_others(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL refuses text with a NUL (SQLSTATE 22021, not transient): the batch is written
    again one update at a time, the others are recorded, and the refused one is left to its
    lease (logged, counted) instead of failing every later batch of this worker for good."""
    poison, fine = code_issued(to="+79160000031"), code_issued(to="+79160000032")
    harness.sms.scripts["+79160000031"] = [SendResult.accepted("m\x00x")]
    await harness.consume(poison, fine)
    await harness.dispatch()
    assert [s["status"] for s in harness.statuses(fine.code_id)] == ["sent"]
    unrecorded = harness.metrics.unrecorded.labels("sms")._value.get()
    if harness.db.engine.dialect.name == "sqlite":  # SQLite keeps the NUL: nothing is refused
        assert [s["status"] for s in harness.statuses(poison.code_id)] == ["sent"]
        assert unrecorded == 0
        return
    row = harness.row(poison.code_id)
    assert (row["state"], row["attempts"]) == ("sending", 1) and harness.statuses(poison.code_id) == []
    assert unrecorded == 1
    [refused] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert refused.code_id == str(poison.code_id) and "\x00" not in refused.getMessage()
    later = code_issued(to="+79160000033")  # the recorder goes on with the next batches
    await harness.consume(later)
    await harness.dispatch()
    assert [s["status"] for s in harness.statuses(later.code_id)] == ["sent"]


async def test_reports_of_unknown_ids_are_kept_up_to_their_limit(harness: Harness) -> None:
    """``SMS_PARKED_REPORTS_MAX`` reports of ids no delivery has are kept; beyond, a report of
    another such id is not (503: the gateway sends it again), a later one of a kept id still is,
    and a report of a known id is applied as ever."""
    async def report(message_id: str, status: str = "delivered") -> ReportResult:
        return await apply_delivery_report(
            ApplyDeliveryReport(message_id=message_id, status=status), uow=harness.uow,
            metrics=harness.metrics, flush=harness.relay.flush, parked_max=2)

    assert [await report(m) for m in ("x-1", "x-2", "x-3")] == [
        ReportResult.PARKED, ReportResult.PARKED, ReportResult.NOT_PARKED]
    assert await report("x-2", "undelivered") == ReportResult.PARKED  # replaces its own
    assert harness.metrics.reports_not_parked._value.get() == 1
    kept = harness.db.run_sync(lambda s: s.execute(
        select(early_reports.c.message_id, early_reports.c.status)).all())
    assert sorted(tuple(r) for r in kept) == [("x-1", "delivered"), ("x-2", "undelivered")]
    event = code_issued(to="+79160000034")
    await harness.consume(event)
    await harness.dispatch()  # m-1: a known id, applied whatever the parked count
    assert await report("m-1") == ReportResult.RECORDED
