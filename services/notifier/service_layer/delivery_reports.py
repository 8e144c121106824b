"""A carrier's verdict on an SMS (``delivered`` / ``undelivered``) becomes a NotificationStatus."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum

from sqlalchemy.orm import Session

from schemas.events import DeliveryStatus
from schemas.topics import NOTIFICATION_STATUS
from services.common import outbox
from services.common.db import Database
from services.notifier.adapters.repository import SqlDeliveries
from services.notifier.adapters.tables import outbox as outbox_table
from services.notifier.domain.delivery import Delivery
from services.notifier.service_layer.metrics import NotifierMetrics
from services.notifier.service_layer.record_codes import Clock, utc_now
from services.notifier.service_layer.statuses import status_record

CARRIER_STATUSES = (DeliveryStatus.DELIVERED.value, DeliveryStatus.UNDELIVERED.value)


class ReportResult(StrEnum):
    RECORDED = "recorded"
    UNCHANGED = "unchanged"  # the same verdict again
    UNKNOWN = "unknown"  # no delivery has this message id


class ApplyDeliveryReport:
    def __init__(
        self, *, db: Database, repo: SqlDeliveries, metrics: NotifierMetrics,
        flush: Callable[[], Awaitable[object]], clock: Clock = utc_now,
    ) -> None:
        self.db, self.repo, self.metrics, self.flush, self.clock = db, repo, metrics, flush, clock

    async def __call__(self, *, message_id: str, status: str) -> ReportResult:
        if status not in CARRIER_STATUSES:
            raise ValueError("status must be delivered or undelivered")
        result, delivery, prefix = await self.db.run(lambda s: self._apply(s, message_id, status))
        if result == ReportResult.RECORDED and delivery is not None:
            self.metrics.deliveries.labels(delivery.channel, delivery.kind, status).inc()
            if delivery.channel == "sms":
                self.metrics.sms_reports_by_prefix.labels(prefix or "other", status).inc()
            await self.flush()
        return result

    def _apply(
        self, session: Session, message_id: str, status: str
    ) -> tuple[ReportResult, Delivery | None, str | None]:
        found = self.repo.by_message_id(session, message_id)
        if found is None:
            return ReportResult.UNKNOWN, None, None
        delivery, prefix = found
        if delivery.carrier_status == status:
            return ReportResult.UNCHANGED, delivery, prefix
        now = self.clock()
        self.repo.set_carrier_status(session, delivery.code_id, status, now)
        outbox.stage(session, outbox_table, NOTIFICATION_STATUS, [status_record(
            code_id=delivery.public_code_id, delivery_id=delivery.code_id,
            request_event_id=delivery.request_event_id if delivery.kind == "code" else None,
            channel=delivery.channel, status=DeliveryStatus(status), attempts=delivery.attempts,
            destination_masked=delivery.destination_masked, now=now, message_id=message_id,
            kind=delivery.kind, gateway=delivery.gateway,
        )])
        return ReportResult.RECORDED, delivery, prefix
