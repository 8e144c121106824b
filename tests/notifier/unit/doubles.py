"""A dispatcher over ``FakeUnitOfWork`` and fake gateways, and readers of the fake store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.events import CodeIssued
from schemas.topics import NOTIFICATION_STATUS
from services.common.metrics import ServiceMetrics
from services.notifier.domain.model import RetryPolicy
from services.notifier.entrypoints.agents import to_record_code
from services.notifier.service_layer.dispatch import Dispatcher, SmsRoutes
from services.notifier.service_layer.metrics import NotifierMetrics
from services.notifier.service_layer.ports import Clock, utc_now
from services.notifier.service_layer.record_codes import record_codes
from tests.notifier.fakes import FakeUnitOfWork
from tests.notifier.support import KEYRING, FakeGateway

SUPPORT_PHONE = "8 800 250-08-90"


async def no_flush() -> None:
    return None


@dataclass
class Desk:
    """One worker's dispatcher on a shared fake database."""

    uow: FakeUnitOfWork
    dispatcher: Dispatcher
    sms: FakeGateway
    email: FakeGateway
    metrics: NotifierMetrics

    async def record(self, *events: CodeIssued) -> None:
        await record_codes([to_record_code(e) for e in events], uow=self.uow, metrics=self.metrics)

    async def dispatch(self) -> int:
        started = await self.dispatcher.step()
        await self.dispatcher.drain()
        return started

    def row(self, code_id: object) -> dict[str, Any]:
        return self.uow.store.rows[str(code_id)]

    def make_due(self) -> None:
        for row in self.uow.store.rows.values():
            row["next_attempt_at"] = datetime.now(UTC) - timedelta(seconds=1)

    def statuses(self, code_id: object = None) -> list[dict[str, Any]]:
        out = [json.loads(r.value) for t, r in self.uow.store.outbox
               if t == NOTIFICATION_STATUS and r.value is not None]  # not tombstones
        return [s for s in out if code_id is None or s["code_id"] == str(code_id)]


def desk(uow: FakeUnitOfWork | None = None, *, routes: SmsRoutes | None = None,
         sms: FakeGateway | None = None, worker_id: str | None = None,
         takeover_s: float = 6.0, clock: Clock = utc_now) -> Desk:
    uow = uow or FakeUnitOfWork()
    metrics = NotifierMetrics(ServiceMetrics("notifier"))
    sms, email = sms or FakeGateway(), FakeGateway()
    dispatcher = Dispatcher(
        uow=uow, keyring=KEYRING, gateways={"sms": sms, "email": email}, metrics=metrics,
        policy=RetryPolicy(initial_s=30, max_s=60), flush=no_flush, support_phone=SUPPORT_PHONE,
        lease_s=30, sms=routes, takeover_s=takeover_s, worker_id=worker_id, clock=clock,
    )
    return Desk(uow, dispatcher, sms, email, metrics)
