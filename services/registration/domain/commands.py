"""Commands: what the CRM asked for, in this service's own terms (translated at the edge)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from schemas.events import TvProduct


@dataclass(frozen=True, kw_only=True)
class LinkContract:
    """Link a subscriber's data to a contract (from ``ContractLinked``); values as typed in the CRM."""

    event_id: uuid.UUID
    occurred_at: datetime
    contract_number: str
    personal_account: str
    tv_product: TvProduct
    full_name: str
    mobile: str
    email: str | None
    passport_series: str
    passport_number: str
    mobile_active: bool


@dataclass(frozen=True, kw_only=True)
class TerminateContract:
    """Close the account of a contract (from ``ContractTerminated``)."""

    event_id: uuid.UUID
    occurred_at: datetime
    contract_number: str


@dataclass(frozen=True, kw_only=True)
class EraseContract:
    """Erase the personal data of a contract's subscriber (from ``ContractErased``)."""

    event_id: uuid.UUID
    occurred_at: datetime
    contract_number: str
