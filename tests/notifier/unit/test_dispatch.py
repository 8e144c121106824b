"""Dispatch decisions on fake ports: send once, retry, expiry, rejection, undecryptable sealed
fields, failover and pins with circuit breakers, and takeover of a silent worker's lease."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from schemas.events import Channel, CodeIssued, Locale
from services.notifier.domain.messages import OutgoingMessage
from services.notifier.domain.model import CircuitState, Delivery, DeliveryUpdate, SendResult
from services.notifier.service_layer.dispatch import SmsRoutes
from services.notifier.service_layer.ports import Transaction
from tests.notifier.fakes import FakeDeliveries, FakeUnitOfWork
from tests.notifier.support import FakeGateway, code_issued
from tests.notifier.unit.doubles import Desk, desk

T = TypeVar("T")

DOWN = SendResult.transient("connection_ClientConnectorError", definite=True)


async def test_each_code_is_sent_once_with_its_text_and_its_status_staged() -> None:
    d = desk()
    sms = code_issued(to="+79161234567", password="ABCDEFGH23")
    mail = code_issued(to="ivanov@example.ru", channel=Channel.EMAIL, locale=Locale.EN)
    await d.record(sms, mail, sms)
    assert await d.dispatch() == 2 and await d.dispatch() == 0
    [sent] = d.sms.sent
    assert (sent.to, sent.code_id) == ("+79161234567", str(sms.code_id)) and "ABCDEFGH23" in sent.text
    assert d.email.sent[0].subject == "Your self-care portal password"
    [status] = d.statuses(sms.code_id)
    assert (status["status"], status["attempts"], status["message_id"]) == ("sent", 1, "m-1")
    row = d.row(sms.code_id)
    assert (row["state"], row["destination_enc"], row["password_enc"]) == ("sent", None, None)


async def test_a_transient_failure_waits_for_its_backoff_then_succeeds() -> None:
    d = desk()
    event = code_issued(to="+79160000001")
    d.sms.scripts["+79160000001"] = [SendResult.transient("http_500"), SendResult.accepted("m-x")]
    await d.record(event)
    await d.dispatch()
    assert (d.row(event.code_id)["state"], d.row(event.code_id)["last_error"]) == ("retry", "http_500")
    assert d.statuses() == [] and await d.dispatch() == 0  # 30 s backoff not over
    d.make_due()
    await d.dispatch()
    [status] = d.statuses(event.code_id)
    assert (status["status"], status["attempts"], status["message_id"]) == ("sent", 2, "m-x")


async def test_rejected_expired_and_undecryptable_codes_fail_with_their_reason() -> None:
    d = desk()
    rejected = code_issued(to="+79160000002")
    d.sms.scripts["+79160000002"] = [SendResult.permanent("http_400")]
    late = code_issued(to="+79160000003", expires_in_s=-1)
    broken = code_issued(to="+79160000004", tamper="bitflip")
    await d.record(rejected, late, broken)
    await d.dispatch()
    assert [m.to for m in d.sms.sent] == ["+79160000002"]
    reasons = {s["code_id"]: (s["reason"], s["attempts"]) for s in d.statuses()}
    assert reasons == {str(rejected.code_id): ("rejected", 1), str(late.code_id): ("expired", 0),
                       str(broken.code_id): ("undecryptable", 0)}  # attempts: gateway calls


async def test_retries_stop_at_the_expiry_with_one_last_try_just_before() -> None:
    d = desk()
    event = code_issued(to="+79160000005", expires_in_s=5)
    d.sms.scripts["+79160000005"] = [SendResult.transient("timeout")]
    await d.record(event)
    await d.dispatch()
    assert d.row(event.code_id)["next_attempt_at"] == event.expires_at - timedelta(seconds=1)
    d.row(event.code_id)["expires_at"] = datetime.now(UTC) + timedelta(seconds=0.5)
    d.make_due()
    await d.dispatch()
    [status] = d.statuses(event.code_id)
    assert (status["status"], status["reason"], status["attempts"]) == ("failed", "expired", 2)


async def test_primary_down_the_fallback_takes_every_code_and_none_twice() -> None:
    primary, fallback = FakeGateway(), FakeGateway()
    d = desk(routes=SmsRoutes(gateways={"primary": primary, "fallback": fallback}, failures=5),
             sms=primary)
    events = [code_issued(to=f"+7916000{i:04d}") for i in range(12)]
    primary.scripts.update({f"+7916000{i:04d}": [DOWN] for i in range(12)})
    await d.record(*events)
    for _ in range(3):
        d.make_due()
        await d.dispatch()
    accepted = Counter(m.code_id for m in fallback.sent)
    assert set(accepted) == {str(e.code_id) for e in events} and max(accepted.values()) == 1
    assert {s["gateway"] for s in d.statuses() if s["status"] == "sent"} == {"fallback"}
    assert {d.row(e.code_id)["gateway"] for e in events} == {"fallback"}


async def test_a_time_out_pins_the_code_to_its_gateway_while_the_circuit_is_open() -> None:
    primary, fallback = FakeGateway(), FakeGateway()
    routes = SmsRoutes(gateways={"primary": primary, "fallback": fallback}, failures=5, open_s=30)
    d = desk(routes=routes, sms=primary)
    slow = code_issued(to="+79161110000")
    primary.scripts["+79161110000"] = [SendResult.transient("timeout"), SendResult.accepted("p-1")]
    await d.record(slow)
    await d.dispatch()
    assert d.row(slow.code_id)["gateway"] == "primary"
    others = [code_issued(to=f"+7916222{i:04d}") for i in range(6)]
    primary.scripts.update({f"+7916222{i:04d}": [DOWN] for i in range(6)})
    await d.record(*others)
    await d.dispatch()
    assert routes.breakers["primary"].state == CircuitState.OPEN
    for _ in range(3):
        d.make_due()
        await d.dispatch()
    assert {m.code_id for m in fallback.sent} == {str(e.code_id) for e in others}
    assert [m.code_id for m in primary.sent].count(str(slow.code_id)) == 1  # no call while open
    routes.breakers["primary"]._opened_at = -1e9  # the open time is over: a probe goes through
    d.make_due()
    await d.dispatch()
    [status] = [s for s in d.statuses(slow.code_id) if s["status"] == "sent"]
    assert (status["gateway"], status["message_id"]) == ("primary", "p-1")
    assert routes.breakers["primary"].state == CircuitState.CLOSED


async def test_attempts_skipped_while_the_circuit_is_open_are_not_counted_as_calls() -> None:
    """Support reads NotificationStatus.attempts as the gateway calls made: a code pinned to a
    gateway whose circuit is open waits without a call, and those turns are not counted."""
    primary = FakeGateway()
    routes = SmsRoutes(gateways={"primary": primary}, failures=1, open_s=30)
    d = desk(routes=routes, sms=primary)
    event = code_issued(to="+79164440000")
    primary.scripts["+79164440000"] = [DOWN, SendResult.accepted("p-9")]
    await d.record(event)
    await d.dispatch()
    assert routes.breakers["primary"].state == CircuitState.OPEN
    for _ in range(3):  # claimed three times while open: no call
        d.make_due()
        await d.dispatch()
    assert [m.code_id for m in primary.sent] == [str(event.code_id)]
    routes.breakers["primary"]._opened_at = -1e9  # the open time is over: a probe goes through
    d.make_due()
    await d.dispatch()
    calls = [m.code_id for m in primary.sent].count(str(event.code_id))
    [status] = [s for s in d.statuses(event.code_id) if s["status"] == "sent"]
    assert (calls, status["attempts"]) == (2, 2)
    assert (d.row(event.code_id)["attempts"], d.row(event.code_id)["skipped"]) == (5, 3)


async def test_a_silent_workers_lease_is_taken_over_and_counted_as_a_resend() -> None:
    shared = FakeUnitOfWork()
    dead = desk(shared, worker_id=str(uuid.uuid4()), takeover_s=3)
    alive = desk(shared, worker_id=str(uuid.uuid4()), takeover_s=3)
    event = code_issued(to="+79163330000")
    await dead.record(event)
    await dead.dispatcher.beat()
    now = datetime.now(UTC)
    await shared.run(lambda tx: tx.deliveries.claim_due(
        now=now, lease_until=now + timedelta(seconds=60), limit=10,
        worker_id=dead.dispatcher.worker_id, gateway="primary"))
    await alive.dispatcher.beat()
    assert await alive.dispatch() == 0  # its owner beats: the lease holds
    shared.store.heartbeats[dead.dispatcher.worker_id] = now - timedelta(seconds=4)
    assert await alive.dispatch() == 1
    assert [m.code_id for m in alive.sms.sent] == [str(event.code_id)]
    assert alive.metrics.resends.labels("sms")._value.get() == 1
    [status] = alive.statuses(event.code_id)
    assert (status["status"], status["attempts"], status["gateway"]) == ("sent", 2, "primary")


async def test_a_stale_update_changes_nothing() -> None:
    d = desk()
    event = code_issued(to="+79160000009")
    await d.record(event)
    await d.dispatch()
    stale = DeliveryUpdate(code_id=str(event.code_id), attempts=1, state="failed", reason="expired")
    written = await d.uow.run(lambda tx: tx.deliveries.finish([stale], datetime.now(UTC)))
    assert written == [] and d.row(event.code_id)["state"] == "sent"


async def test_outcomes_are_kept_while_the_database_is_away_and_recorded_after() -> None:
    d = desk()
    event = code_issued(to="+79160000010")
    await d.record(event)
    await d.dispatcher.step()
    while d.dispatcher._tasks:
        await d.dispatcher._finished.wait()
        d.dispatcher._finished.clear()
    d.uow.fail_next = 1
    try:
        await d.dispatcher.recorder.record_pending()
    except ConnectionError:
        pass
    else:
        raise AssertionError("the database was away")
    assert d.statuses() == [] and d.row(event.code_id)["state"] == "sending"
    await d.dispatcher.recorder.record_pending()
    assert [s["status"] for s in d.statuses(event.code_id)] == ["sent"]


async def test_a_worker_whose_own_heartbeat_is_late_does_not_take_its_own_sends_over() -> None:
    d = desk(takeover_s=3)
    event = code_issued(to="+79163330001")
    await d.record(event)
    now = datetime.now(UTC)
    # its send is in flight (or its answer not yet recorded) while the database was away, so
    # its heartbeat is late: the row is still its own, not a dead worker's
    await d.uow.run(lambda tx: tx.deliveries.claim_due(
        now=now, lease_until=now + timedelta(seconds=60), limit=10,
        worker_id=d.dispatcher.worker_id, gateway="primary"))
    d.uow.store.heartbeats[d.dispatcher.worker_id] = now - timedelta(seconds=10)
    assert await d.dispatch() == 0
    assert d.sms.sent == [] and d.metrics.resends.labels("sms")._value.get() == 0


async def test_no_worker_is_taken_for_dead_right_after_the_database_was_away() -> None:
    # the dispatchers' clock is the test's: the takeover window is stepped through, not slept
    # through (a loaded machine can take longer than a short window between two steps)
    takeover_s = 3.0
    clock = [datetime.now(UTC)]
    shared = FakeUnitOfWork()
    silent = desk(shared, worker_id=str(uuid.uuid4()), takeover_s=takeover_s, clock=lambda: clock[0])
    alive = desk(shared, worker_id=str(uuid.uuid4()), takeover_s=takeover_s, clock=lambda: clock[0])
    event = code_issued(to="+79163330002")
    await silent.record(event)
    clock[0] = now = datetime.now(UTC)  # after the row was recorded: it is due
    await shared.run(lambda tx: tx.deliveries.claim_due(
        now=now, lease_until=now + timedelta(seconds=60), limit=10,
        worker_id=silent.dispatcher.worker_id, gateway="primary"))
    # silent for longer than takeover_s already
    shared.store.heartbeats[silent.dispatcher.worker_id] = now - timedelta(seconds=2 * takeover_s)
    shared.fail_next = 1  # the database is away for the alive worker too
    with pytest.raises(ConnectionError):
        await alive.dispatcher.step()
    # back: the silent worker could not beat either, so it is not dead yet, up to takeover_s later
    assert await alive.dispatch() == 0
    clock[0] = now + timedelta(seconds=takeover_s * 0.9)
    assert await alive.dispatch() == 0
    # a whole takeover_s since, and it still has not beaten
    clock[0] = now + timedelta(seconds=takeover_s + 0.1)
    assert await alive.dispatch() == 1
    assert [m.code_id for m in alive.sms.sent] == [str(event.code_id)]
    assert alive.metrics.resends.labels("sms")._value.get() == 1


class HeldFor(FakeGateway):
    """Holds every call to ``held`` until ``release`` is set."""

    def __init__(self, held: str) -> None:
        super().__init__()
        self.held, self.release = held, asyncio.Event()

    async def send(self, message: OutgoingMessage) -> SendResult:
        if message.to == self.held:
            await self.release.wait()
        return await super().send(message)


async def test_a_code_that_expires_while_it_waits_for_a_slot_is_failed_with_no_call() -> None:
    now = [datetime.now(UTC)]
    sms = HeldFor("+79161110011")
    d = desk(sms=sms, clock=lambda: now[0])
    d.dispatcher._slots = asyncio.Semaphore(1)  # NOTIFIER_MAX_IN_FLIGHT=1: the slot is taken
    slow, short = code_issued(to="+79161110011"), code_issued(to="+79161110012", expires_in_s=3)
    await d.record(slow, short)
    now[0] = datetime.now(UTC)  # both due
    assert await d.dispatcher.step() == 2  # both claimed; the short-lived one waits for the slot
    await asyncio.sleep(0.01)
    now[0] += timedelta(seconds=10)  # the slow call takes 10 s
    sms.release.set()
    await d.dispatcher.drain()
    assert [m.to for m in sms.sent] == ["+79161110011"]
    [status] = d.statuses(short.code_id)
    assert (status["status"], status["reason"], status["attempts"]) == ("failed", "expired", 0)


class ThreadedUnitOfWork(FakeUnitOfWork):
    """As ``Database.run``: each transaction in one worker thread, where a cancelled caller does
    not stop it; ``gate`` holds a transaction that has started."""

    def __init__(self) -> None:
        super().__init__()
        self.executor = ThreadPoolExecutor(max_workers=1)
        self.gate, self.started = threading.Event(), threading.Event()
        self.gate.set()

    async def run(self, work: Callable[[Transaction], T]) -> T:
        def held() -> T:
            self.started.set()
            self.gate.wait()
            return self.apply(work)
        return await asyncio.get_running_loop().run_in_executor(self.executor, held)


@pytest.fixture
def threaded_uow() -> Iterator[ThreadedUnitOfWork]:
    uow = ThreadedUnitOfWork()
    try:
        yield uow
    finally:  # a held transaction is let go, so that its thread ends with the test
        uow.gate.set()
        uow.executor.shutdown(wait=True)


async def test_a_stop_while_updates_are_written_does_not_write_them_twice(
        threaded_uow: ThreadedUnitOfWork) -> None:
    """The stop cancels the recorder while its transaction runs in the database thread; the
    transaction commits all the same and the stop records the batch again: the second write must
    change nothing (a skipped attempt counted twice would make the status's attempts wrong)."""
    uow = threaded_uow
    sms = FakeGateway()
    routes = SmsRoutes(gateways={"primary": sms}, failures=5, open_s=30)
    d = desk(uow, routes=routes, sms=sms)
    event = code_issued(to="+79161110010")
    await d.record(event)
    routes.breakers["primary"]._opened_at = routes.breakers["primary"].clock()
    await d.dispatcher.step()  # the circuit is open: skipped, no call
    await asyncio.wait(list(d.dispatcher._tasks.values()))
    uow.gate.clear()
    uow.started.clear()
    recording = asyncio.create_task(d.dispatcher.recorder.run())
    while not uow.started.is_set():  # the recorder's transaction has started
        await asyncio.sleep(0.01)
    stopping = asyncio.create_task(d.dispatcher._stop(recording))  # SIGTERM now
    await asyncio.sleep(0.05)
    uow.gate.set()  # the transaction commits after all
    await stopping
    assert (d.row(event.code_id)["attempts"], d.row(event.code_id)["skipped"]) == (1, 1)
    routes.breakers["primary"]._opened_at = -1e9  # the gateway is back
    d.make_due()
    await d.dispatch()
    [status] = [s for s in d.statuses(event.code_id) if s["status"] == "sent"]
    assert status["attempts"] == len(sms.sent) == 1


async def test_rows_claimed_while_the_worker_stops_are_handed_back(
        monkeypatch: pytest.MonkeyPatch, threaded_uow: ThreadedUnitOfWork) -> None:
    """A stop (faust cancels the dispatcher) while the claim's transaction runs in the database
    thread: the claim commits all the same, and its rows are handed back due now, with no call,
    rather than left leased to a stopped worker until another takes them over as a resend."""
    uow = threaded_uow
    d = desk(uow, worker_id=str(uuid.uuid4()), takeover_s=3)
    event = code_issued(to="+79161110013")
    await d.record(event)
    in_claim, go_on = threading.Event(), threading.Event()
    claim_due = FakeDeliveries.claim_due

    def held_claim(self: FakeDeliveries, **kwargs: Any) -> list[Delivery]:
        in_claim.set()
        go_on.wait()
        return claim_due(self, **kwargs)

    monkeypatch.setattr(FakeDeliveries, "claim_due", held_claim)
    running = asyncio.create_task(d.dispatcher.run())
    try:
        while not in_claim.is_set():
            await asyncio.sleep(0.01)
        running.cancel()  # SIGTERM
        await asyncio.sleep(0.05)
    finally:
        go_on.set()  # the claim commits
    await asyncio.gather(running, return_exceptions=True)
    await uow.run(lambda tx: None)  # the database thread has finished what it was given
    row = d.row(event.code_id)
    assert (row["state"], row["attempts"], row["skipped"], row["last_error"]) == (
        "retry", 1, 1, "shutdown")
    assert d.sms.sent == []


def refusing(monkeypatch: pytest.MonkeyPatch, refused: CodeIssued, *, away: int = 0) -> None:
    """The database refuses (not transient) any batch with an update of ``refused``'s code, and
    is away (transient) for ``away`` more writes after that."""
    finish, left = FakeDeliveries.finish, [away]

    def refusing_finish(self: FakeDeliveries, updates: Sequence[DeliveryUpdate],
                        now: datetime) -> list[DeliveryUpdate]:
        if any(u.code_id == str(refused.code_id) for u in updates):
            raise ValueError("refused")
        if left[0]:
            left[0] -= 1
            raise ConnectionError("database away")
        return finish(self, updates, now)

    monkeypatch.setattr(FakeDeliveries, "finish", refusing_finish)


async def sent_not_recorded(d: Desk, *events: CodeIssued) -> None:
    await d.record(*events)
    await d.dispatcher.step()
    await asyncio.wait(list(d.dispatcher._tasks.values()))


async def test_an_update_the_database_refuses_is_set_aside_and_the_rest_recorded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    d = desk()
    poison, a, b = (code_issued(to=f"+7916000002{i}") for i in range(3))
    await sent_not_recorded(d, a, poison, b)
    refusing(monkeypatch, poison)
    await d.dispatcher.recorder.record_pending()
    assert {s["code_id"] for s in d.statuses()} == {str(a.code_id), str(b.code_id)}
    assert d.row(poison.code_id)["state"] == "sending"  # left to its lease
    assert d.metrics.unrecorded.labels("sms")._value.get() == 1
    assert d.dispatcher.recorder._pending == []


async def test_the_database_away_while_updates_are_written_one_by_one_keeps_the_rest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    d = desk()
    poison, a, b = (code_issued(to=f"+7916000003{i}") for i in range(3))
    await sent_not_recorded(d, poison, a, b)
    refusing(monkeypatch, poison, away=1)  # away at `a`'s own write
    with pytest.raises(ConnectionError):
        await d.dispatcher.recorder.record_pending()
    pending = [u.code_id for _, u in d.dispatcher.recorder._pending]
    assert pending == [str(a.code_id), str(b.code_id)]  # the refused one is not tried again
    await d.dispatcher.recorder.record_pending()
    assert {s["code_id"] for s in d.statuses()} == {str(a.code_id), str(b.code_id)}
    assert d.metrics.unrecorded.labels("sms")._value.get() == 1
