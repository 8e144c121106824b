"""Builders of CRM records for registration's tests (wire JSON, as the CRM would send it)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

BASE_TIME = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def not_after() -> datetime:
    """What a worker refuses beyond: now plus the default MAX_CLOCK_SKEW_S."""
    return datetime.now(UTC) + timedelta(seconds=300)


def at(minutes: int) -> str:
    return (BASE_TIME + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def linked(
    contract: str,
    *,
    mobile: str = "+7 916 123-45-67",
    email: str | None = "ivanov@example.ru",
    account: str = "123456789012",
    product: str = "interactive",
    minutes: int = 0,
    name: str = "Иванов Иван Иванович",
    passport: tuple[str, str] = ("4510", "123456"),
    mobile_active: bool = True,
    event_id: str | None = None,
) -> dict[str, Any]:
    subscriber: dict[str, Any] = {
        "full_name": name,
        "mobile": mobile,
        "passport": {"series": passport[0], "number": passport[1]},
    }
    if email is not None:
        subscriber["email"] = email
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "occurred_at": at(minutes),
        "contract_number": contract,
        "personal_account": account,
        "tv_product": product,
        "subscriber": subscriber,
        "mobile_active": mobile_active,
        "operator_id": "crm-op-17",
    }


def terminated(contract: str, *, minutes: int = 60, event_id: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id or str(uuid.uuid4()), "occurred_at": at(minutes), "contract_number": contract
    }


def raw(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode("utf-8")


def erased(contract: str, *, minutes: int = 120, event_id: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id or str(uuid.uuid4()), "occurred_at": at(minutes), "contract_number": contract
    }
