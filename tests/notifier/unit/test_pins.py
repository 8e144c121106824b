"""A code that timed out stays on its gateway for good (DESIGN.md "SMS gateways: failover": "A
time-out is not definite: that code is retried on the same gateway only, so that no code is
accepted by two gateways") — through definite failures of its own after the time-out, and while
that gateway's circuit is open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import OperationalError

from services.notifier.domain.messages import OutgoingMessage
from services.notifier.domain.model import CircuitState, Delivery, SendResult, Verdict
from services.notifier.service_layer.dispatch import SmsRoutes
from tests.notifier.support import FakeGateway, code_issued
from tests.notifier.unit.doubles import Desk, desk

TIMEOUT = SendResult.transient("timeout")
REFUSED = SendResult.transient("connection_ClientConnectorError", definite=True)
DEFINITE = {
    "5xx": SendResult.transient("http_503", definite=True),
    "429": SendResult.transient("http_429", 5.0, definite=True),
    "refused": REFUSED,
}


def two_gateways() -> tuple[Desk, SmsRoutes, FakeGateway, FakeGateway]:
    primary, fallback = FakeGateway(), FakeGateway()
    routes = SmsRoutes(gateways={"primary": primary, "fallback": fallback}, failures=5, open_s=30)
    return desk(routes=routes, sms=primary), routes, primary, fallback


async def rounds(d: Desk, n: int) -> None:
    for _ in range(n):
        d.make_due()
        await d.dispatch()


def calls(gateway: FakeGateway, code_id: object) -> int:
    return [m.code_id for m in gateway.sent].count(str(code_id))


@pytest.mark.parametrize("failure", list(DEFINITE), ids=list(DEFINITE))
async def test_a_definite_failure_after_a_time_out_keeps_the_code_on_its_gateway(failure: str) -> None:
    d, routes, primary, fallback = two_gateways()
    slow = code_issued(to="+79161110001")
    primary.scripts["+79161110001"] = [TIMEOUT, DEFINITE[failure], SendResult.accepted("p-1")]
    await d.record(slow)
    await d.dispatch()  # times out: the primary may have accepted it
    await rounds(d, 1)  # then fails definitely on the same gateway
    row = d.row(slow.code_id)
    assert (row["state"], row["gateway"]) == ("retry", "primary")  # the earlier time-out still holds it
    others = [code_issued(to=f"+7916333{i:04d}") for i in range(6)]
    primary.scripts.update({f"+7916333{i:04d}": [REFUSED] for i in range(6)})
    await d.record(*others)
    await d.dispatch()  # only the new codes are due: their definite failures open the circuit
    assert routes.breakers["primary"].state == CircuitState.OPEN
    await rounds(d, 3)
    assert {m.code_id for m in fallback.sent} == {str(e.code_id) for e in others}  # failover works
    assert calls(fallback, slow.code_id) == 0 and calls(primary, slow.code_id) == 2
    assert d.row(slow.code_id)["gateway"] == "primary"
    routes.breakers["primary"]._opened_at = -1e9  # the open time is over: a probe goes through
    await rounds(d, 1)
    [status] = [s for s in d.statuses(slow.code_id) if s["status"] == "sent"]
    assert (status["gateway"], status["message_id"], status["attempts"]) == ("primary", "p-1", 3)
    assert calls(fallback, slow.code_id) == 0


async def test_a_code_that_timed_out_opens_its_gateways_circuit_and_still_waits_for_it() -> None:
    d, routes, primary, fallback = two_gateways()
    slow = code_issued(to="+79161110002")
    primary.scripts["+79161110002"] = [TIMEOUT] + [DEFINITE["5xx"]] * 6 + [SendResult.accepted("p-2")]
    await d.record(slow)
    await d.dispatch()  # times out
    await rounds(d, 5)  # five definite failures of its own: the circuit opens
    assert routes.breakers["primary"].state == CircuitState.OPEN
    await rounds(d, 3)  # open: no call, and not to the fallback either
    assert calls(primary, slow.code_id) == 6 and calls(fallback, slow.code_id) == 0
    routes.breakers["primary"]._opened_at = -1e9
    await rounds(d, 1)  # the probe fails: open again, still pinned
    assert routes.breakers["primary"].state == CircuitState.OPEN
    assert d.row(slow.code_id)["gateway"] == "primary"
    await rounds(d, 2)
    assert calls(primary, slow.code_id) == 7 and fallback.sent == []
    routes.breakers["primary"]._opened_at = -1e9
    await rounds(d, 1)  # the next probe is accepted
    [status] = [s for s in d.statuses(slow.code_id) if s["status"] == "sent"]
    assert (status["gateway"], status["message_id"]) == ("primary", "p-2")
    assert routes.breakers["primary"].state == CircuitState.CLOSED and fallback.sent == []


def fresh_delivery(code_id: str) -> Delivery:
    return Delivery(code_id=code_id, request_event_id=code_id, channel="sms", locale="ru",
                    destination_masked="+7******0001", destination_enc=None, password_enc=None,
                    expires_at=datetime.now(UTC) + timedelta(minutes=10), state="sending",
                    attempts=1, gateway="primary", gateway_fresh=True)


async def test_a_probe_taken_for_a_failover_is_given_back_when_the_repin_or_the_call_fails() -> None:
    """The primary's circuit is open and the fallback's half-open: a fresh code takes the
    fallback's one probe. If the re-pin's write fails (the database away) or the gateway adapter
    raises, no answer judged the fallback, so the probe must be free for the next code; kept,
    the fallback would stay unusable in this worker until it restarts."""
    routes = SmsRoutes(gateways={"primary": FakeGateway(), "fallback": FakeGateway()},
                       failures=5, open_s=30)
    primary, fallback = routes.breakers["primary"], routes.breakers["fallback"]
    primary._opened_at = primary.clock()  # open for 30 s
    fallback._opened_at = -1e9  # its open time is over: one probe may go
    message = OutgoingMessage(code_id="c-1", channel="sms", to="+79161110001", text="x")

    async def repin_fails(_d: Delivery, _gateway: str) -> bool:
        raise OperationalError("UPDATE", {}, ConnectionError("database away"))

    with pytest.raises(OperationalError):
        await routes.send(fresh_delivery("c-1"), message, repin_fails)
    assert fallback.state == CircuitState.HALF_OPEN and fallback.available()

    async def repinned(_d: Delivery, _gateway: str) -> bool:
        return True

    broken = routes.gateways["fallback"]
    assert isinstance(broken, FakeGateway)
    broken.raises = RuntimeError("a bug in the adapter")
    crashed = await routes.send(fresh_delivery("c-2"), message, repinned)
    # a retry, pinned to the gateway that may have the code (the re-pin's, not the claim's)
    assert (crashed.result.error, crashed.gateway, crashed.pin) == ("internal_error", "fallback",
                                                                   "fallback")
    assert fallback.available()
    broken.raises = None
    routed = await routes.send(fresh_delivery("c-3"), message, repinned)
    assert routed.result.verdict == Verdict.ACCEPTED and fallback.state == CircuitState.CLOSED


class CrashesAfterSending(FakeGateway):
    """An adapter with a bug that shows only after the request went out."""

    async def send(self, message: OutgoingMessage) -> SendResult:
        self.sent.append(message)
        raise RuntimeError("a bug after the request was written")


async def test_a_crash_after_a_failover_keeps_the_code_on_the_gateway_it_was_sent_to() -> None:
    """Claimed with a fresh pin to the primary, re-pinned to the fallback when the primary's
    circuit opened, and the fallback's adapter crashes after sending: the retry stays on the
    fallback (its pin in the database), never the primary the claim had chosen."""
    primary, fallback = FakeGateway(), CrashesAfterSending()
    routes = SmsRoutes(gateways={"primary": primary, "fallback": fallback}, failures=5, open_s=30)
    d = desk(routes=routes, sms=primary)
    event = code_issued(to="+79161110009")
    await d.record(event)
    await d.dispatcher.step()  # claimed, pinned (fresh) to the primary, waiting for its call
    routes.breakers["primary"]._opened_at = routes.breakers["primary"].clock()  # other codes' failures
    await d.dispatcher.drain()  # re-pinned to the fallback, called, crashed
    assert calls(fallback, event.code_id) == 1
    assert (d.row(event.code_id)["state"], d.row(event.code_id)["gateway"]) == ("retry", "fallback")
    routes.breakers["primary"]._opened_at = -1e9  # the primary is back
    fallback.__class__ = FakeGateway  # and the fallback's bug fixed
    await rounds(d, 1)
    assert calls(primary, event.code_id) == 0 and calls(fallback, event.code_id) == 2
    [status] = [s for s in d.statuses(event.code_id) if s["status"] == "sent"]
    assert status["gateway"] == "fallback"
