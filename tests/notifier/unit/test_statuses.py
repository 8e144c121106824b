from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from schemas.events import DeliveryStatus, NotificationStatus
from services.common.codec import decode
from services.notifier.service_layer.statuses import status_record


@pytest.mark.parametrize("status", list(DeliveryStatus))
def test_status_records_are_valid_wire_events_with_a_stable_id(status: DeliveryStatus) -> None:
    code_id = str(uuid.uuid4())
    kwargs = {"code_id": code_id, "request_event_id": str(uuid.uuid4()), "channel": "sms", "status": status,
              "attempts": 2, "destination_masked": "+7******4567", "reason": "expired",
              "message_id": "m-1"}
    first = status_record(now=datetime.now(UTC), **kwargs)  # type: ignore[arg-type]
    again = status_record(now=datetime.now(UTC), **kwargs)  # type: ignore[arg-type]
    event = decode(NotificationStatus, first.value, max_bytes=65536)
    assert (event.code_id, event.status, event.attempts) == (uuid.UUID(code_id), status, 2)
    assert first.key == code_id.encode()
    assert decode(NotificationStatus, again.value, max_bytes=65536).event_id == event.event_id
