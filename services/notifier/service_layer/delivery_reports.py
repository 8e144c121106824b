"""Handler of ``ApplyDeliveryReport``: a carrier's verdict on an SMS (``delivered`` /
``undelivered``) is kept on its delivery and becomes a NotificationStatus."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import StrEnum

from schemas.events import DeliveryStatus
from schemas.topics import NOTIFICATION_STATUS
from services.notifier.domain.commands import ApplyDeliveryReport
from services.notifier.domain.model import Delivery
from services.notifier.service_layer.metrics import NotifierMetrics
from services.notifier.service_layer.ports import Clock, Transaction, UnitOfWork, utc_now
from services.notifier.service_layer.statuses import status_record

log = logging.getLogger(__name__)

CARRIER_STATUSES = (DeliveryStatus.DELIVERED.value, DeliveryStatus.UNDELIVERED.value)


class ReportResult(StrEnum):
    RECORDED = "recorded"
    UNCHANGED = "unchanged"  # the same verdict again
    UNKNOWN = "unknown"  # no delivery has this message id
    AMBIGUOUS = "ambiguous"  # both gateways gave this message id: whose verdict it is is unknown


async def apply_delivery_report(
    command: ApplyDeliveryReport, *, uow: UnitOfWork, metrics: NotifierMetrics,
    flush: Callable[[], Awaitable[object]], clock: Clock = utc_now,
) -> ReportResult:
    if command.status not in CARRIER_STATUSES:
        raise ValueError("status must be delivered or undelivered")
    now = clock()
    result, delivery, prefix = await uow.run(lambda tx: _apply(tx, command, now))
    if result == ReportResult.RECORDED and delivery is not None:
        metrics.deliveries.labels(delivery.channel, delivery.kind, command.status).inc()
        if delivery.channel == "sms":
            metrics.sms_reports_by_prefix.labels(prefix or "other", command.status).inc()
        await flush()
    return result


def _apply(tx: Transaction, command: ApplyDeliveryReport, now: datetime
           ) -> tuple[ReportResult, Delivery | None, str | None]:
    found = tx.deliveries.by_message_id(command.message_id)
    if not found:
        return ReportResult.UNKNOWN, None, None
    if len(found) > 1:  # another subscriber's verdict is worse than none
        log.warning("a delivery report's message id was given by both SMS gateways; not applied",
                    extra={"code_ids": [d.code_id for d, _ in found]})
        return ReportResult.AMBIGUOUS, None, None
    [(delivery, prefix)] = found
    if delivery.carrier_status == command.status:
        return ReportResult.UNCHANGED, delivery, prefix
    if not tx.deliveries.set_carrier_status(delivery.code_id, command.status, now):
        return ReportResult.UNKNOWN, None, None  # erased since it was read: nothing to tell
    tx.outbox.stage(NOTIFICATION_STATUS, [status_record(
        code_id=delivery.public_code_id, delivery_id=delivery.code_id,
        request_event_id=delivery.request_event_id if delivery.kind == "code" else None,
        channel=delivery.channel, status=DeliveryStatus(command.status),
        attempts=delivery.calls, destination_masked=delivery.destination_masked,
        now=now, message_id=command.message_id, kind=delivery.kind,
        gateway=delivery.gateway, change=now.isoformat(),  # a verdict may flip back: each is news
    )])
    return ReportResult.RECORDED, delivery, prefix
