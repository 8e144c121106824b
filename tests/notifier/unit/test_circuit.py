"""The circuit breaker of an SMS gateway."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from services.notifier.domain.messages import OutgoingMessage
from services.notifier.domain.model import CircuitBreaker, CircuitState, Delivery, SendResult
from services.notifier.service_layer.dispatch import PRIMARY, SmsRoutes


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_circuit_opens_after_consecutive_definite_failures_and_one_probe_decides() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=5, open_s=30, clock=clock)
    for _ in range(4):
        breaker.record_failure()
    breaker.record_success()  # not consecutive
    for _ in range(4):
        breaker.record_failure()
        permit = breaker.acquire()
        assert permit is not None
        breaker.record_inconclusive(permit)  # a time-out neither counts nor resets
    assert breaker.state == CircuitState.CLOSED
    breaker.record_failure()
    assert breaker.state == CircuitState.OPEN and not breaker.acquire()
    clock.now = 29.9
    assert not breaker.acquire()
    clock.now = 30.0
    assert breaker.acquire() and not breaker.acquire()  # one probe only
    breaker.record_failure()  # the probe failed: open again
    assert breaker.state == CircuitState.OPEN and breaker.reopens_in() == 30
    clock.now = 60.0
    assert breaker.acquire()
    breaker.record_success()
    assert breaker.state == CircuitState.CLOSED and breaker.acquire() and breaker.acquire()


def opened(clock: Clock) -> CircuitBreaker:
    breaker = CircuitBreaker(failures=1, open_s=30, clock=clock)
    breaker.record_failure()
    assert breaker.state == CircuitState.OPEN
    return breaker


def test_a_call_let_through_while_closed_cannot_give_back_the_probe_of_another() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, open_s=30, clock=clock)
    early = breaker.acquire()  # closed: a call goes out, and hangs
    assert early is not None and not early.probe
    breaker.record_failure()  # another call's definite failure opens the circuit
    clock.now = 30.0
    probe = breaker.acquire()
    assert probe is not None and probe.probe
    breaker.release(early)  # the early call ends with no answer (cancelled)
    assert breaker.acquire() is None and not breaker.available()  # still one probe only
    breaker.release(probe)
    assert breaker.available() and breaker.acquire() is not None


def test_only_the_probes_own_time_out_reopens_the_circuit() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, open_s=30, clock=clock)
    early = breaker.acquire()
    assert early is not None
    breaker.record_failure()
    clock.now = 30.0
    probe = breaker.acquire()
    assert probe is not None
    breaker.record_inconclusive(early)  # the early call times out: says nothing of the gateway
    assert breaker.state == CircuitState.HALF_OPEN and breaker.acquire() is None
    breaker.record_inconclusive(probe)
    assert breaker.state == CircuitState.OPEN and breaker.reopens_in() == 30


def test_a_probe_from_an_earlier_half_open_cycle_does_not_free_the_current_one() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.now = 30.0
    stale = breaker.acquire()
    assert stale is not None and stale.probe
    breaker.record_failure()  # a definite failure while half-open: open again
    clock.now = 60.0
    current = breaker.acquire()
    assert current is not None and current is not stale
    breaker.release(stale)  # the first probe's call ends late with no answer
    breaker.record_inconclusive(stale)
    assert breaker.state == CircuitState.HALF_OPEN and breaker.acquire() is None


class HeldGateway:
    """Holds a call to a destination in ``held`` until its event is set; answers ``answer``."""

    def __init__(self, answer: SendResult, held: list[str]) -> None:
        self.answer, self.calls = answer, 0
        self.held = {to: asyncio.Event() for to in held}

    async def send(self, message: OutgoingMessage) -> SendResult:
        self.calls += 1
        if message.to in self.held:
            await self.held[message.to].wait()
        return self.answer


def delivery(n: int) -> Delivery:
    return Delivery(code_id=f"code-{n}", request_event_id=f"request-{n}", channel="sms",
                    locale="ru", destination_masked="+7******0000", destination_enc=None,
                    password_enc=None, expires_at=datetime.now(UTC) + timedelta(minutes=10),
                    state="sending", attempts=1, gateway=PRIMARY)


def message(n: int) -> OutgoingMessage:
    return OutgoingMessage(code_id=f"code-{n}", channel="sms", to=f"+7916000000{n}", text="x")


async def no_repin(_delivery: Delivery, _gateway: str) -> bool:
    raise AssertionError("a single gateway: nothing to re-pin to")


async def test_a_cancelled_call_from_before_the_opening_lets_no_second_probe_through() -> None:
    """Through ``SmsRoutes``: a call sent while the circuit was closed is cancelled while the
    probe is out; a third call must still wait for the probe's answer."""
    gateway = HeldGateway(SendResult.transient("timeout"), held=[message(1).to, message(2).to])
    clock = Clock()
    routes = SmsRoutes(gateways={PRIMARY: gateway}, failures=1, open_s=30)
    breaker = routes.breakers[PRIMARY]
    breaker.clock = clock
    early = asyncio.create_task(routes.send(delivery(1), message(1), no_repin))
    await asyncio.sleep(0)
    assert gateway.calls == 1
    breaker.record_failure()  # another call's definite failure: open
    clock.now = 30.0
    probe = asyncio.create_task(routes.send(delivery(2), message(2), no_repin))
    await asyncio.sleep(0)
    assert gateway.calls == 2
    early.cancel()
    await asyncio.gather(early, return_exceptions=True)
    third = await routes.send(delivery(3), message(3), no_repin)
    assert (third.result.error, third.gateway, gateway.calls) == ("circuit_open", None, 2)
    gateway.held[message(2).to].set()  # the probe times out: open again
    await probe
    assert breaker.state == CircuitState.OPEN
