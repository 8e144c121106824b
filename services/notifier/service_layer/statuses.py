"""NotificationStatus records for the outbox: masked destination only, a stable event id."""

from __future__ import annotations

import uuid
from datetime import datetime

from schemas.events import Channel, DeliveryStatus, Gateway, NotificationKind, NotificationStatus
from services.common.codec import WireRecord, encode

SOURCE = "/selfcare-access/notifier"
_NAMESPACE = uuid.UUID("6f1d2c3e-8b7a-4f4e-9d3c-2a1b0c9d8e7f")


def status_record(
    *,
    code_id: str,
    request_event_id: str | None,
    channel: str,
    status: DeliveryStatus,
    attempts: int,
    destination_masked: str,
    now: datetime,
    reason: str | None = None,
    message_id: str | None = None,
    kind: str = NotificationKind.CODE.value,
    gateway: str | None = None,
    delivery_id: str | None = None,
    change: str | None = None,
) -> WireRecord:
    """The event id is derived from (delivery, status), so a re-published status is deduplicated.

    ``delivery_id`` is a notice's own id (one per contact); a code's delivery id is its code id.
    ``change`` tells apart two changes to one status: a carrier's verdict may flip back
    (delivered, undelivered, delivered), and each flip is news that must not be dropped as a
    duplicate of the first."""
    derived = f"{delivery_id or code_id}:{status.value}" + (f":{change}" if change else "")
    # built from our own validated row: model_construct skips re-validation (hot path)
    event = NotificationStatus.model_construct(
        event_id=uuid.uuid5(_NAMESPACE, derived),
        occurred_at=now,
        code_id=uuid.UUID(code_id),
        request_event_id=uuid.UUID(request_event_id) if request_event_id else None,
        channel=Channel(channel),
        status=status,
        attempts=attempts,
        destination_masked=destination_masked,
        reason=reason,
        message_id=message_id,
        kind=NotificationKind(kind),
        gateway=Gateway(gateway) if gateway else None,
    )
    return encode(event, key=code_id, source=SOURCE)
