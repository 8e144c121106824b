"""Handler of ``ApplyDeliveryReport``: a carrier's verdict on an SMS (``delivered`` /
``undelivered``) is kept on its delivery and becomes a NotificationStatus.

A report can come before its delivery is recorded ``sent``: the gateway answered the call with
the message id, and the carrier's verdict followed before the recorder wrote that answer (it
gathers answers for a moment, longer while the database is slow). Such a report is *parked*
(kept by its message id for a day) and applied by the transaction that records the delivery
sent (``apply_parked``), right after its ``sent`` status.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from enum import StrEnum

from schemas.events import DeliveryStatus
from schemas.topics import NOTIFICATION_STATUS
from services.common.codec import WireRecord
from services.notifier.domain.commands import ApplyDeliveryReport
from services.notifier.domain.model import Delivery, DeliveryUpdate
from services.notifier.service_layer.metrics import NotifierMetrics
from services.notifier.service_layer.ports import Clock, Transaction, UnitOfWork, utc_now
from services.notifier.service_layer.statuses import status_record

log = logging.getLogger(__name__)

CARRIER_STATUSES = (DeliveryStatus.DELIVERED.value, DeliveryStatus.UNDELIVERED.value)


class ReportResult(StrEnum):
    RECORDED = "recorded"
    UNCHANGED = "unchanged"  # the same verdict again
    UNKNOWN = "unknown"  # its delivery was erased while the report was applied
    PARKED = "parked"  # no delivery has this message id yet: kept for its delivery's answer
    AMBIGUOUS = "ambiguous"  # both gateways gave this message id: whose verdict it is is unknown
    NOT_PARKED = "not_parked"  # no delivery has it yet, and SMS_PARKED_REPORTS_MAX are kept

PARKED_MAX = 100_000  # SMS_PARKED_REPORTS_MAX's default


async def apply_delivery_report(
    command: ApplyDeliveryReport, *, uow: UnitOfWork, metrics: NotifierMetrics,
    flush: Callable[[], Awaitable[object]], clock: Clock = utc_now, parked_max: int = PARKED_MAX,
) -> ReportResult:
    """``parked_max``: how many reports of message ids no delivery has yet may be kept; beyond,
    such a report is not kept (the gateway is told to send it again later)."""
    if command.status not in CARRIER_STATUSES:
        raise ValueError("status must be delivered or undelivered")
    now = clock()
    result, delivery, prefix = await uow.run(lambda tx: _apply(tx, command, now, parked_max))
    if result == ReportResult.NOT_PARKED:
        metrics.reports_not_parked.inc()
    if result == ReportResult.RECORDED and delivery is not None:
        count_verdict(metrics, delivery, command.status, prefix)
        await flush()
    return result


def count_verdict(metrics: NotifierMetrics, delivery: Delivery, status: str,
                  prefix: str | None) -> None:
    metrics.deliveries.labels(delivery.channel, delivery.kind, status).inc()
    if delivery.channel == "sms":
        metrics.sms_reports_by_prefix.labels(prefix or "other", status).inc()


def _apply(tx: Transaction, command: ApplyDeliveryReport, now: datetime, parked_max: int
           ) -> tuple[ReportResult, Delivery | None, str | None]:
    found = tx.deliveries.by_message_id(command.message_id)
    if not found:  # sent, its answer not recorded yet (or an id of no message of ours)
        if not tx.deliveries.park_report(command.message_id, command.status, now,
                                         limit=parked_max):
            return ReportResult.NOT_PARKED, None, None
        return ReportResult.PARKED, None, None
    if len(found) > 1:  # another subscriber's verdict is worse than none
        log.warning("a delivery report's message id was given by both SMS gateways; not applied",
                    extra={"code_ids": [d.code_id for d, _ in found]})
        return ReportResult.AMBIGUOUS, None, None
    [(delivery, prefix)] = found
    if delivery.carrier_status == command.status:
        return ReportResult.UNCHANGED, delivery, prefix
    if not tx.deliveries.set_carrier_status(delivery.code_id, command.status, now):
        return ReportResult.UNKNOWN, None, None  # erased since it was read: nothing to tell
    tx.outbox.stage(NOTIFICATION_STATUS, [verdict_record(
        delivery, status=command.status, message_id=command.message_id, attempts=delivery.calls,
        gateway=delivery.gateway, now=now)])
    return ReportResult.RECORDED, delivery, prefix


def verdict_record(delivery: Delivery, *, status: str, message_id: str, attempts: int,
                   gateway: str | None, now: datetime) -> WireRecord:
    return status_record(
        code_id=delivery.public_code_id, delivery_id=delivery.code_id,
        request_event_id=delivery.request_event_id if delivery.kind == "code" else None,
        channel=delivery.channel, status=DeliveryStatus(status), attempts=attempts,
        destination_masked=delivery.destination_masked, now=now, message_id=message_id,
        kind=delivery.kind, gateway=gateway,
        change=now.isoformat(),  # a verdict may flip back: each is news
    )


def apply_parked(tx: Transaction, sent: Sequence[tuple[Delivery, DeliveryUpdate]],
                 now: datetime) -> list[tuple[Delivery, DeliveryUpdate, str]]:
    """In the transaction that records deliveries ``sent``: the reports parked for their message
    ids, applied (kept on the row, a status staged after the ``sent`` one); returns them."""
    by_id = {u.message_id: (d, u) for d, u in sent  # the SMS gateway reports SMS only
             if u.message_id is not None and d.channel == "sms"}
    parked = tx.deliveries.take_parked(list(by_id)) if by_id else {}
    applied: list[tuple[Delivery, DeliveryUpdate, str]] = []
    records: list[WireRecord] = []
    for message_id, status in parked.items():
        delivery, update = by_id[message_id]
        tx.deliveries.set_carrier_status(delivery.code_id, status, now)
        records.append(verdict_record(delivery, status=status, message_id=message_id,
                                      attempts=update.calls(delivery), gateway=update.gateway,
                                      now=now))
        applied.append((delivery, update, status))
    tx.outbox.stage(NOTIFICATION_STATUS, records)
    return applied
