"""Records send outcomes in small batches: one transaction each, statuses staged in the outbox."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.orm import Session

from schemas.events import DeliveryStatus
from schemas.topics import NOTIFICATION_STATUS
from services.common import outbox
from services.common.codec import WireRecord
from services.common.db import Database
from services.notifier.adapters.repository import SqlDeliveries
from services.notifier.adapters.tables import outbox as outbox_table
from services.notifier.domain.delivery import Delivery, Outcome
from services.notifier.domain.model import DeliveryState
from services.notifier.service_layer.metrics import NotifierMetrics
from services.notifier.service_layer.statuses import status_record

log = logging.getLogger(__name__)


class Recorder:
    def __init__(
        self, *, db: Database, repo: SqlDeliveries, metrics: NotifierMetrics,
        flush: Callable[[], Awaitable[object]], clock: Callable[[], datetime],
        every_s: float = 0.2,
    ) -> None:
        self.db, self.repo, self.metrics, self.flush, self.clock = db, repo, metrics, flush, clock
        self.every_s = every_s
        self._pending: list[tuple[Delivery, Outcome]] = []
        self._ready = asyncio.Event()

    def add(self, delivery: Delivery, outcome: Outcome) -> None:
        self._pending.append((delivery, outcome))
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            await asyncio.sleep(self.every_s)  # let a few outcomes gather
            try:
                await self.record_pending()
            except Exception as exc:  # kept in memory and retried; leases keep the rows safe
                log.warning("recording outcomes failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(1.0)

    async def record_pending(self) -> None:
        batch, self._pending = self._pending, []
        self._ready.clear()
        if not batch:
            return
        now = self.clock()
        try:
            written = await self.db.run(lambda s: self._write(s, batch, now))
        except BaseException:
            self._pending[:0] = batch
            self._ready.set()
            raise
        for delivery, outcome in written:
            self._count(delivery, outcome)
        await self.flush()

    def _write(
        self, session: Session, batch: list[tuple[Delivery, Outcome]], now: datetime
    ) -> list[tuple[Delivery, Outcome]]:
        by_code = {outcome.code_id: delivery for delivery, outcome in batch}
        fresh = self.repo.finish(session, [outcome for _, outcome in batch], now)
        if len(fresh) < len(batch):
            log.warning("stale outcomes ignored", extra={"count": len(batch) - len(fresh)})
        written = [(by_code[outcome.code_id], outcome) for outcome in fresh]
        statuses: list[WireRecord] = []
        for delivery, outcome in written:
            if outcome.state in (DeliveryState.SENT, DeliveryState.FAILED):
                statuses.append(status_record(
                    code_id=delivery.public_code_id, delivery_id=delivery.code_id,
                    request_event_id=delivery.request_event_id if delivery.kind == "code" else None,
                    channel=delivery.channel, status=DeliveryStatus(outcome.state),
                    attempts=outcome.attempts, destination_masked=delivery.destination_masked,
                    now=now, reason=outcome.reason, message_id=outcome.message_id,
                    kind=delivery.kind,
                    gateway=outcome.gateway if outcome.state == DeliveryState.SENT else None,
                ))
        outbox.stage(session, outbox_table, NOTIFICATION_STATUS, statuses)
        return written

    def _count(self, delivery: Delivery, outcome: Outcome) -> None:
        if outcome.state == DeliveryState.RETRY:
            self.metrics.retries.labels(delivery.channel).inc()
        else:
            self.metrics.deliveries.labels(delivery.channel, delivery.kind, outcome.state).inc()
            if outcome.state == DeliveryState.SENT and delivery.channel == "sms":
                self.metrics.sms_accepted.labels(outcome.gateway or "primary").inc()
                self.metrics.sms_sent_by_prefix.labels(outcome.prefix or "other").inc()
            log.info("delivery %s", outcome.state,
                     extra={"code_id": delivery.code_id, "attempts": outcome.attempts,
                            "reason": outcome.reason})
