"""The codec takes strict JSON only: what RFC 8259 refuses is a dead letter, even in an ignored field."""

from __future__ import annotations

import json
import uuid

import pytest

from schemas.events import CodeRequested, ContractTerminated
from services.common.codec import DecodeError, decode

EVENT_ID = str(uuid.uuid4())
GOOD = json.dumps({"event_id": EVENT_ID, "occurred_at": "2026-11-24T09:30:00Z",
                   "contract_number": "77-1"}).encode()


def with_extra(raw: bytes) -> bytes:
    return GOOD[:-1] + b', "extra": ' + raw + b"}"


@pytest.mark.parametrize("value", [
    with_extra(b"NaN"), with_extra(b"Infinity"), with_extra(b"-Infinity"),
    with_extra(b'{"a": 1, "a": 2}'),
    GOOD[:-1] + b', "contract_number": "77-2"}',  # the same field twice: which one is meant?
    b"[" * 10_000 + b"]" * 10_000,
    with_extra(b"[" * 10_000 + b"]" * 10_000),
    with_extra(b"1" + b"0" * 5000),
], ids=["nan", "infinity", "minus-infinity", "duplicate-key-nested", "duplicate-field",
        "nested-10000", "nested-10000-in-field", "5000-digit-int"])
def test_not_strict_json_is_invalid_json(value: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode(ContractTerminated, value, max_bytes=1_000_000)
    assert info.value.error_class == "invalid_json"


def test_duplicate_login_is_refused_not_resolved_to_one_of_them() -> None:
    value = json.dumps({"event_id": EVENT_ID, "occurred_at": "2026-11-24T09:30:00Z",
                        "channel": "sms"})[:-1] + ', "login": "+79161234567", "login": "+79031234567"}'
    with pytest.raises(DecodeError) as info:
        decode(CodeRequested, value.encode(), max_bytes=10_000)
    assert info.value.error_class == "invalid_json"
    assert "7916" not in info.value.reason and "7903" not in info.value.reason


def test_strict_json_still_takes_a_good_record_with_big_finite_numbers() -> None:
    event = decode(ContractTerminated, with_extra(b"[1e300, -12345678901234567890, 0.5]"),
                   max_bytes=10_000)
    assert event.contract_number == "77-1"


@pytest.mark.parametrize("occurred_at", [
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",  # no UTC datetime for these
    "0000-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-24T24:00:00Z",
    "2026-11-24T09:30:00", "2026-11-24 09:30:00Z", "2026-11-24T09:30:00+0300",
])
def test_a_time_that_is_not_an_rfc3339_utc_instant_is_invalid_event(occurred_at: str) -> None:
    value = json.dumps({"event_id": EVENT_ID, "occurred_at": occurred_at, "contract_number": "77-1"})
    with pytest.raises(DecodeError) as info:
        decode(ContractTerminated, value.encode(), max_bytes=10_000)
    assert info.value.error_class == "invalid_event"
    assert info.value.reason.startswith("occurred_at")


@pytest.mark.parametrize("occurred_at", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                                         "2026-11-24t09:30:00.123456789z", "2026-11-24T12:30:00+03:00"])
def test_far_but_valid_times_are_taken(occurred_at: str) -> None:
    value = json.dumps({"event_id": EVENT_ID, "occurred_at": occurred_at, "contract_number": "77-1"})
    assert decode(ContractTerminated, value.encode(), max_bytes=10_000).occurred_at.tzinfo is not None
