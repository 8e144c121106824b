"""The dispatcher: claims due deliveries, sends them concurrently, records each attempt's update;
and which gateway an SMS goes to (pins, failover; ``SmsRoutes``, below).

It runs as a task beside the stream agent in the same worker. Rows are leased (state
``sending``) before any gateway call, so another worker or a restart does not send them again
while the lease holds. Updates are recorded in small batches as they arrive, each batch in one
transaction with its NotificationStatus records staged in the outbox; a slow destination delays
only its own row.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

from schemas.events import Gateway
from services.common.crypto import DecryptError, Keyring, code_aad
from services.notifier.domain.messages import OutgoingMessage, render, render_notice
from services.notifier.domain.model import (
    CircuitBreaker,
    CircuitState,
    Delivery,
    DeliveryState,
    DeliveryUpdate,
    FailReason,
    RetryPolicy,
    SendResult,
    Verdict,
)
from services.notifier.domain.notices import notice_aad
from services.notifier.service_layer.metrics import NotifierMetrics, destination_prefix
from services.notifier.service_layer.ports import Clock, NotificationGateway, UnitOfWork, utc_now
from services.notifier.service_layer.recorder import Recorder

log = logging.getLogger(__name__)
T = TypeVar("T")


class Dispatcher:
    def __init__(
        self, *, uow: UnitOfWork, keyring: Keyring,
        gateways: Mapping[str, NotificationGateway], metrics: NotifierMetrics, policy: RetryPolicy,
        flush: Callable[[], Awaitable[object]], support_phone: str, claim_limit: int = 500,
        max_in_flight: int = 200, lease_s: float = 60.0, idle_s: float = 0.2,
        shutdown_grace_s: float = 5.0, clock: Clock = utc_now, sms: SmsRoutes | None = None,
        takeover_s: float = 6.0, worker_id: str | None = None,
    ) -> None:
        self.uow, self.keyring, self.gateways = uow, keyring, gateways
        self.sms = sms if sms is not None else (
            SmsRoutes(gateways={PRIMARY: gateways["sms"]}) if "sms" in gateways else None)
        self.takeover_s = takeover_s
        self.worker_id = worker_id or str(uuid.uuid4())
        self.metrics, self.policy, self.support_phone = metrics, policy, support_phone
        self.claim_limit, self.max_in_flight = claim_limit, max_in_flight
        self.lease_s, self.idle_s, self.clock = lease_s, idle_s, clock
        self.shutdown_grace_s = shutdown_grace_s
        self.recorder = Recorder(uow=uow, metrics=metrics, flush=flush, clock=clock)
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: dict[str, asyncio.Task[None]] = {}  # by code id
        self._waiting: dict[str, Delivery] = {}  # claimed, not yet at the gateway
        self._wake = asyncio.Event()
        self._finished = asyncio.Event()  # a send task ended
        # when this worker last failed to reach the database: the others could not beat then
        # either, so none of them is taken for dead until ``takeover_s`` after it
        self._database_failed_at: datetime | None = None

    def wake(self) -> None:
        """New rows were recorded: claim now rather than at the next poll."""
        self._wake.set()

    def preferred_gateway(self) -> str | None:
        """The SMS gateway a new delivery is pinned to."""
        return self.sms.preferred() if self.sms is not None else None

    async def beat(self) -> None:
        """Tells other workers this one is alive (its leases are not to be taken over)."""
        now = self.clock()
        await self._reaching_database(self.uow.run(
            lambda tx: tx.workers.beat(worker_id=self.worker_id, now=now)))

    async def _reaching_database(self, call: Awaitable[T]) -> T:
        """``call``; a failure is remembered (see ``_database_failed_at``) and raised."""
        try:
            return await call
        except Exception:
            self._database_failed_at = self.clock()
            raise

    async def _beating(self) -> None:
        while True:
            await asyncio.sleep(self.takeover_s / 3)
            try:
                await self.beat()
            except Exception as exc:  # database away: others may take over after takeover_s
                log.warning("heartbeat failed (%s)", type(exc).__name__)

    async def run(self) -> None:
        """Forever: keep up to ``max_in_flight`` sends going (twice that claimed and waiting)."""
        await self.beat()
        before = self.clock() - timedelta(days=1)
        await self.uow.run(lambda tx: tx.workers.forget(before=before))
        recording = asyncio.create_task(self.recorder.run())
        beating = asyncio.create_task(self._beating())
        try:
            while True:
                # cleared before the claim: a wake-up that arrives while it runs is kept
                self._wake.clear()
                try:
                    started = await self.step()
                except Exception as exc:  # database away: leases keep rows safe; try again
                    log.warning("dispatch round failed (%s)", type(exc).__name__)
                    started = 0
                    await asyncio.sleep(1.0)
                if not started:
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=self.idle_s)
                    except TimeoutError:
                        pass
        finally:
            beating.cancel()
            await self._stop(recording)

    async def _stop(self, recording: asyncio.Task[None]) -> None:
        """Graceful stop: rows still waiting for a slot are handed back (due now), calls in flight
        get ``shutdown_grace_s`` to finish and be recorded; a call cut short keeps its lease."""
        recording.cancel()
        now = self.clock()
        for code_id, delivery in list(self._waiting.items()):
            if self._tasks[code_id].done():
                continue
            self._tasks[code_id].cancel()
            self.recorder.add(delivery, DeliveryUpdate(
                code_id=code_id, attempts=delivery.attempts, state=DeliveryState.RETRY.value,
                next_attempt_at=now, error="shutdown", called=False,
                gateway=None if delivery.gateway_fresh else delivery.gateway))
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()), timeout=self.shutdown_grace_s)
        for task in list(self._tasks.values()):
            task.cancel()
        try:
            await asyncio.wait_for(self.recorder.record_pending(), timeout=5)
        except Exception as exc:  # statuses left in the outbox go out at the next start
            log.warning("updates not recorded at stop (%s)", type(exc).__name__)

    async def step(self) -> int:
        """One claim: starts sends for due rows; returns how many."""
        while len(self._tasks) > self.max_in_flight:  # claim in large batches, not a few at a time
            self._finished.clear()
            await self._finished.wait()
        room = 2 * self.max_in_flight - len(self._tasks)
        now = self.clock()
        lease_until = now + timedelta(seconds=self.lease_s)
        limit = min(self.claim_limit, room)
        takeover_from = now - timedelta(seconds=self.takeover_s)
        # the database was away lately: a silent worker may be alive
        away_lately = self._database_failed_at is not None and self._database_failed_at > takeover_from
        stale_before = None if away_lately else takeover_from
        gateway = self.preferred_gateway()
        claim = asyncio.ensure_future(self._reaching_database(self.uow.run(
            lambda tx: tx.deliveries.claim_due(
                now=now, lease_until=lease_until, limit=limit, worker_id=self.worker_id,
                stale_before=stale_before, gateway=gateway))))
        try:
            claimed = await asyncio.shield(claim)
        except asyncio.CancelledError:
            # a stop: the claim's transaction runs on in the database thread and may commit;
            # its rows are then accepted, so that the stop hands them back rather than leave
            # them leased to a stopped worker
            try:
                self.accept(await asyncio.wait_for(claim, timeout=self.shutdown_grace_s))
            except Exception as exc:  # failed: nothing claimed; too slow: left to a takeover
                log.warning("claim at stop not settled (%s)", type(exc).__name__)
            raise
        self.accept(claimed)
        return len(claimed)

    def room(self) -> int:
        """How many more leased rows may wait here for a slot (twice the sends in flight)."""
        return max(0, 2 * self.max_in_flight - len(self._tasks))

    def accept(self, leased: list[Delivery]) -> None:
        """Start sends for rows leased to this worker (claimed, or leased when recorded)."""
        for delivery in leased:
            code_id = delivery.code_id
            if code_id in self._tasks:  # still being sent here (its lease ran out meanwhile)
                continue
            if delivery.resumed:  # its worker stopped mid-send: the gateway may have it already
                self.metrics.resends.labels(delivery.channel).inc()
                log.warning("re-sending a delivery taken over from a stopped worker",
                            extra={"code_id": code_id, "attempt": delivery.attempts})
            self._waiting[code_id] = delivery
            self._tasks[code_id] = asyncio.create_task(self._attempt(delivery))
            self._tasks[code_id].add_done_callback(partial(self._forget, code_id))

    async def drain(self) -> None:
        """Wait for sends in flight and their recording (tests and benchmarks)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks.values()))
        await self.recorder.record_pending()

    def _forget(self, code_id: str, _task: object = None) -> None:
        self._tasks.pop(code_id, None)
        self._waiting.pop(code_id, None)
        self._finished.set()

    async def _attempt(self, delivery: Delivery) -> None:
        try:
            update = await self._send(delivery)
        except Exception as exc:  # a bug, not the gateway: retry later rather than hold the lease
            log.error("send attempt crashed (%s)", type(exc).__name__, extra={"code_id": delivery.code_id})
            update = self._classify(delivery, SendResult.transient("internal_error"), self.clock())
        self.recorder.add(delivery, update)

    async def _send(self, d: Delivery) -> DeliveryUpdate:
        if d.expires_at <= self.clock():
            return failed(d, FailReason.EXPIRED.value, called=False)
        try:
            message = open_message(d, keyring=self.keyring, support_phone=self.support_phone)
        except DecryptError:
            log.warning("encrypted fields do not decrypt", extra={"code_id": d.code_id})
            return failed(d, FailReason.UNDECRYPTABLE.value, called=False)
        async with self._slots:
            self._waiting.pop(d.code_id, None)
            if d.expires_at <= self.clock():  # it expired while it waited for a slot
                return failed(d, FailReason.EXPIRED.value, called=False)
            started = time.perf_counter()
            if d.channel == "sms" and self.sms is not None:
                routed = await self.sms.send(d, message, self._repin)
            else:
                routed = Routed(await self.gateways[d.channel].send(message), d.channel, None)
            self.metrics.gateway_seconds.labels(d.channel).observe(time.perf_counter() - started)
        prefix = destination_prefix(message.to) if d.channel == "sms" else None
        return self._classify(d, routed, self.clock(), prefix)

    async def _repin(self, d: Delivery, gateway: str) -> bool:
        return await self.uow.run(lambda tx: tx.deliveries.repin(
            code_id=d.code_id, attempts=d.attempts, gateway=gateway))

    def _classify(self, d: Delivery, routed: Routed | SendResult, now: datetime,
                  prefix: str | None = None) -> DeliveryUpdate:
        return classify(d, routed, now=now, policy=self.policy, prefix=prefix)


# One attempt's two pure steps: open and render the message, and classify the gateway's answer
# into the update to record (state, next attempt, the gateway pin to keep).
def open_message(d: Delivery, *, keyring: Keyring, support_phone: str) -> OutgoingMessage:
    """Decrypts and renders (``DecryptError`` when a sealed field does not open)."""
    if d.kind == "notice":
        to = keyring.decrypt(d.destination_enc or "", aad=notice_aad(d.request_event_id, d.channel))
        return render_notice(delivery_id=d.code_id, channel=d.channel, locale=d.locale, to=to,
                             support_phone=support_phone)
    to = keyring.decrypt(d.destination_enc or "", aad=code_aad(d.code_id, "destination"))
    password = keyring.decrypt(d.password_enc or "", aad=code_aad(d.code_id, "password"))
    return render(code_id=d.code_id, channel=d.channel, locale=d.locale, to=to,
                  password=password, support_phone=support_phone)


def classify(d: Delivery, routed: Routed | SendResult, *, now: datetime, policy: RetryPolicy,
             prefix: str | None = None) -> DeliveryUpdate:
    if isinstance(routed, SendResult):  # an answer, or a crash of the attempt: counted as a call
        routed = Routed(routed, d.channel, d.gateway)
    result, pin, called = routed.result, routed.pin, routed.gateway is not None
    if result.verdict == Verdict.ACCEPTED:
        return DeliveryUpdate(code_id=d.code_id, attempts=d.attempts, state=DeliveryState.SENT.value,
                       message_id=result.message_id, gateway=pin, prefix=prefix)
    if result.verdict == Verdict.PERMANENT:
        return failed(d, FailReason.REJECTED.value, result.error, pin)
    when = policy.next_attempt(attempts=d.attempts, now=now, expires_at=d.expires_at,
                               retry_after_s=result.retry_after_s)
    if when is None:
        return failed(d, FailReason.EXPIRED.value, result.error, pin, called=called)
    log.info("send failed, retry scheduled",
             extra={"code_id": d.code_id, "error": result.error, "attempt": d.attempts})
    return DeliveryUpdate(code_id=d.code_id, attempts=d.attempts, state=DeliveryState.RETRY.value,
                   next_attempt_at=when, error=result.error, gateway=pin, called=called)


def failed(d: Delivery, reason: str, error: str | None = None, gateway: str | None = None, *,
           called: bool = True) -> DeliveryUpdate:
    return DeliveryUpdate(code_id=d.code_id, attempts=d.attempts, state=DeliveryState.FAILED.value,
                   reason=reason, error=error, gateway=gateway or d.gateway, called=called)


# --- SMS routes: which gateway (pins, failover) ----------------------------------------------
# Which SMS gateway a message goes to: the primary, or the fallback while the primary's circuit
# is open — and never a second gateway for a message the first one may have taken.
#
# A delivery is pinned to a gateway in the database before every call (``claim_due`` writes the pin
# with the lease). A pin chosen by the current attempt is *fresh*: no earlier call can hold it, so
# if that gateway's circuit is open the pin may move to the other gateway (written before the call).
# Otherwise the pin stays until a definite failure (connection refused, 5xx, 429) is recorded for a
# fresh pin; a time-out, a lost connection after sending, or a crash keep it for good.

PRIMARY, FALLBACK = Gateway.PRIMARY.value, Gateway.FALLBACK.value
Repin = Callable[[Delivery, str], Awaitable[bool]]


@dataclass(frozen=True)
class Routed:
    result: SendResult
    gateway: str | None  # where the call went (the channel for email; None: no call was made)
    pin: str | None  # the pin to keep after this attempt


class SmsRoutes:
    def __init__(
        self, *, gateways: Mapping[str, NotificationGateway], metrics: NotifierMetrics | None = None,
        failures: int = 5, open_s: float = 30.0,
    ) -> None:
        self.gateways = dict(gateways)
        self.metrics = metrics
        self.breakers = {
            name: CircuitBreaker(failures=failures, open_s=open_s, on_change=self._changed(name))
            for name in self.gateways
        }
        if metrics is not None:
            for name in self.gateways:
                metrics.circuit_open.labels(name).set(0)

    def _changed(self, name: str) -> Callable[[CircuitState], None]:
        def note(state: CircuitState) -> None:
            if self.metrics is not None:
                self.metrics.circuit_open.labels(name).set(1 if state == CircuitState.OPEN else 0)
            log.warning("SMS gateway circuit %s", state.value, extra={"gateway": name})
        return note

    def other(self, name: str) -> str | None:
        other = FALLBACK if name == PRIMARY else PRIMARY
        return other if other in self.gateways else None

    def preferred(self) -> str:
        """The gateway for a delivery not pinned yet: the primary unless its circuit is open."""
        if self.breakers[PRIMARY].available() or FALLBACK not in self.gateways:
            return PRIMARY
        return FALLBACK if self.breakers[FALLBACK].available() else PRIMARY

    async def send(self, delivery: Delivery, message: OutgoingMessage, repin: Repin) -> Routed:
        name = delivery.gateway or PRIMARY
        fresh = delivery.gateway_fresh
        if name not in self.gateways:  # pinned to a gateway no longer configured: wait for it
            log.warning("delivery pinned to an unconfigured SMS gateway",
                        extra={"code_id": delivery.code_id, "gateway": name})
            return Routed(SendResult.transient("gateway_unconfigured", 60.0), None, name)
        permit = self.breakers[name].acquire()
        if permit is None:
            other = self.other(name) if fresh else None
            permit = self.breakers[other].acquire() if other is not None else None
            if other is None or permit is None:
                wait = max(1.0, self.breakers[name].reopens_in())
                skipped = SendResult.transient("circuit_open", wait, definite=True)
                return Routed(skipped, None, None if fresh else name)
            try:
                pinned = await repin(delivery, other)
            except BaseException:  # the database away: no call, the probe (if taken) is free
                self.breakers[other].release(permit)
                raise
            if not pinned:  # the row was taken over meanwhile: no call
                self.breakers[other].release(permit)
                return Routed(SendResult.transient("lease_lost"), None, other)
            name = other
        breaker = self.breakers[name]
        try:
            result = await self.gateways[name].send(message)
        except Exception as exc:  # a bug in the adapter, maybe after the request went out: the
            # pin stays on this gateway (the re-pin above is in the database, not in ``delivery``)
            breaker.release(permit)
            log.error("send attempt crashed (%s)", type(exc).__name__,
                      extra={"code_id": delivery.code_id, "gateway": name})
            return Routed(SendResult.transient("internal_error"), name, name)
        except BaseException:  # cancelled: no answer to judge the gateway by; a later call may probe
            breaker.release(permit)
            raise
        if result.verdict == Verdict.TRANSIENT and result.definite:
            breaker.record_failure()
            return Routed(result, name, None if fresh else name)
        if result.verdict == Verdict.TRANSIENT:
            breaker.record_inconclusive(permit)
        else:  # accepted, or refused for good (a 4xx is an answer: the gateway is up)
            breaker.record_success()
        return Routed(result, name, name)
