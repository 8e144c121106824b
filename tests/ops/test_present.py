"""What ``selfcare-ops tail`` and ``trace`` make of a tombstone: an erasure tombstones keys on
topics that otherwise hold events (code.issued, password.changed, notification.status)."""

from __future__ import annotations

import pytest

from schemas.topics import ACCOUNT_CHANGED, CODE_ISSUED, NOTIFICATION_STATUS, PASSWORD_CHANGED
from services.ops.present import describe_value, parse


@pytest.mark.parametrize("topic", [ACCOUNT_CHANGED, CODE_ISSUED, PASSWORD_CHANGED, NOTIFICATION_STATUS])
def test_a_tombstone_is_shown_as_one_and_is_no_event(topic: str) -> None:
    assert describe_value("p." + topic, None, "p.") == {"type": "tombstone"}
    assert parse("p." + topic, None, "p.") is None  # trace skips it


def test_an_empty_value_is_not_a_tombstone() -> None:
    assert describe_value(CODE_ISSUED, b"") == {"unparsed": "<0 bytes, not shown>"}
