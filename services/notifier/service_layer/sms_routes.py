"""Which SMS gateway a message goes to: the primary, or the fallback while the primary's circuit
is open — and never a second gateway for a message the first one may have taken.

A delivery is pinned to a gateway in the database before every call (``claim_due`` writes the pin
with the lease). A pin chosen by the current attempt is *fresh*: no earlier call can hold it, so
if that gateway's circuit is open the pin may move to the other gateway (written before the call).
Otherwise the pin stays until a definite failure (connection refused, 5xx, 429) is recorded for a
fresh pin; a time-out, a lost connection after sending, or a crash keep it for good.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from schemas.events import Gateway
from services.notifier.domain.circuit import CircuitBreaker, CircuitState
from services.notifier.domain.delivery import Delivery
from services.notifier.domain.messages import OutgoingMessage
from services.notifier.domain.model import SendResult, Verdict
from services.notifier.service_layer.metrics import NotifierMetrics
from services.notifier.service_layer.ports import NotificationGateway

log = logging.getLogger(__name__)
PRIMARY, FALLBACK = Gateway.PRIMARY.value, Gateway.FALLBACK.value
Repin = Callable[[Delivery, str], Awaitable[bool]]


@dataclass(frozen=True)
class Routed:
    result: SendResult
    gateway: str | None  # where the call went (None: no call)
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
        if not self.breakers[name].acquire():
            other = self.other(name) if fresh else None
            if other is None or not self.breakers[other].acquire():
                wait = max(1.0, self.breakers[name].reopens_in())
                skipped = SendResult.transient("circuit_open", wait, definite=True)
                return Routed(skipped, None, None if fresh else name)
            if not await repin(delivery, other):  # the row was taken over meanwhile: no call
                self.breakers[other].release()
                return Routed(SendResult.transient("lease_lost"), None, other)
            name = other
        result = await self.gateways[name].send(message)
        breaker = self.breakers[name]
        if result.verdict == Verdict.TRANSIENT and result.definite:
            breaker.record_failure()
            return Routed(result, name, None if fresh else name)
        if result.verdict == Verdict.TRANSIENT:
            breaker.record_inconclusive()
        else:  # accepted, or refused for good (a 4xx is an answer: the gateway is up)
            breaker.record_success()
        return Routed(result, name, name)
