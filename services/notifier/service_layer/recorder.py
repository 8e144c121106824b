"""Records the updates of finished attempts in small batches: one transaction each, with the
NotificationStatus of every delivery that became final staged in the outbox, and the carrier's
verdicts that came before the delivery was recorded sent (``delivery_reports.apply_parked``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from schemas.events import DeliveryStatus
from schemas.topics import NOTIFICATION_STATUS
from services.common.codec import WireRecord
from services.notifier.domain.model import Delivery, DeliveryState, DeliveryUpdate
from services.notifier.service_layer.delivery_reports import apply_parked, count_verdict
from services.notifier.service_layer.metrics import NotifierMetrics
from services.notifier.service_layer.ports import Clock, Transaction, UnitOfWork
from services.notifier.service_layer.statuses import status_record

log = logging.getLogger(__name__)


class Recorder:
    def __init__(
        self, *, uow: UnitOfWork, metrics: NotifierMetrics,
        flush: Callable[[], Awaitable[object]], clock: Clock, every_s: float = 0.2,
    ) -> None:
        self.uow, self.metrics, self.flush, self.clock = uow, metrics, flush, clock
        self.every_s = every_s
        self._pending: list[tuple[Delivery, DeliveryUpdate]] = []
        self._ready = asyncio.Event()

    def add(self, delivery: Delivery, update: DeliveryUpdate) -> None:
        self._pending.append((delivery, update))
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            await asyncio.sleep(self.every_s)  # let a few updates gather
            try:
                await self.record_pending()
            except Exception as exc:  # kept in memory and retried; leases keep the rows safe
                log.warning("recording updates failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(1.0)

    async def record_pending(self) -> None:
        batch, self._pending = self._pending, []
        self._ready.clear()
        if not batch:
            return
        try:
            await self._record(batch)
        except Exception as exc:
            if self.uow.transient(exc):
                self._put_back(batch)
                raise
            await self._record_each(batch, exc)
        except BaseException:
            self._put_back(batch)
            raise
        await self.flush()  # a failed publish leaves the rows to the relay's table read

    async def _record_each(self, batch: list[tuple[Delivery, DeliveryUpdate]],
                           cause: Exception) -> None:
        """A batch the database refused for a reason that is not transient: one transaction per
        update, so that the one it cannot take does not hold back the others for good."""
        log.warning("recording a batch failed (%s); recording its updates one by one",
                    type(cause).__name__, extra={"count": len(batch)})
        for i, item in enumerate(batch):
            try:
                await self._record([item])
            except Exception as exc:
                if self.uow.transient(exc):
                    self._put_back(batch[i:])
                    raise
                self._unrecordable(*item, exc)
            except BaseException:
                self._put_back(batch[i:])
                raise

    def _unrecordable(self, delivery: Delivery, update: DeliveryUpdate, exc: Exception) -> None:
        """Dropped: the row keeps its lease, and once the lease runs out it is claimed and sent
        again under the same idempotency key, until it is recorded or its code expires."""
        self.metrics.unrecorded.labels(delivery.channel).inc()
        log.error("a delivery update cannot be recorded (%s); left to its lease",
                  type(exc).__name__,
                  extra={"code_id": delivery.code_id, "state": update.state,
                         "attempts": update.attempts})

    def _put_back(self, items: list[tuple[Delivery, DeliveryUpdate]]) -> None:
        self._pending[:0] = items
        self._ready.set()

    async def _record(self, batch: list[tuple[Delivery, DeliveryUpdate]]) -> None:
        now = self.clock()
        written, verdicts = await self.uow.run(lambda tx: self._write(tx, batch, now))
        for delivery, update in written:
            self._count(delivery, update)
        for delivery, update, status in verdicts:
            count_verdict(self.metrics, delivery, status, update.prefix)

    def _write(
        self, tx: Transaction, batch: list[tuple[Delivery, DeliveryUpdate]], now: datetime
    ) -> tuple[list[tuple[Delivery, DeliveryUpdate]], list[tuple[Delivery, DeliveryUpdate, str]]]:
        by_code = {update.code_id: delivery for delivery, update in batch}
        fresh = tx.deliveries.finish([update for _, update in batch], now)
        if len(fresh) < len(batch):
            log.warning("stale updates ignored", extra={"count": len(batch) - len(fresh)})
        written = [(by_code[update.code_id], update) for update in fresh]
        statuses: list[WireRecord] = []
        for delivery, update in written:
            if update.state in (DeliveryState.SENT, DeliveryState.FAILED):
                statuses.append(status_record(
                    code_id=delivery.public_code_id, delivery_id=delivery.code_id,
                    request_event_id=delivery.request_event_id if delivery.kind == "code" else None,
                    channel=delivery.channel, status=DeliveryStatus(update.state),
                    attempts=update.calls(delivery), destination_masked=delivery.destination_masked,
                    now=now, reason=update.reason, message_id=update.message_id,
                    kind=delivery.kind,
                    gateway=update.gateway if update.state == DeliveryState.SENT else None,
                ))
        tx.outbox.stage(NOTIFICATION_STATUS, statuses)
        sent = [(d, u) for d, u in written if u.state == DeliveryState.SENT]
        return written, apply_parked(tx, sent, now) if sent else []

    def _count(self, delivery: Delivery, update: DeliveryUpdate) -> None:
        if update.state == DeliveryState.RETRY:
            self.metrics.retries.labels(delivery.channel).inc()
        else:
            self.metrics.deliveries.labels(delivery.channel, delivery.kind, update.state).inc()
            if update.state == DeliveryState.SENT and delivery.channel == "sms":
                self.metrics.sms_accepted.labels(update.gateway or "primary").inc()
                self.metrics.sms_sent_by_prefix.labels(update.prefix or "other").inc()
            log.info("delivery %s", update.state,
                     extra={"code_id": delivery.code_id, "attempts": update.attempts,
                            "reason": update.reason})
