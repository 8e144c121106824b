from __future__ import annotations

import pytest

from services.notifier.domain.commands import ApplyDeliveryReport
from services.notifier.entrypoints.webhook import parse_report


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b'"x"', b'{"message_id": "m1"}', b'{"status": "delivered"}',
    b'{"message_id": "m1", "status": "read"}', b'{"message_id": 5, "status": "delivered"}',
    b'{"message_id": "", "status": "delivered"}', b'{"message_id": "' + b"x" * 65 + b'", "status": "delivered"}',
    b"\xff\xfe",
])
def test_bad_reports_are_rejected(body: bytes) -> None:
    assert parse_report(body) is None


@pytest.mark.parametrize("status", ["delivered", "undelivered"])
def test_good_report(status: str) -> None:
    assert parse_report(b'{"message_id": "m-1", "status": "%s", "extra": 1}' % status.encode()) == (
        ApplyDeliveryReport(message_id="m-1", status=status))
