"""The records this service publishes: ``AccountChanged`` and ``ContractRejected``.

Event ids are derived (UUIDv5) from what they describe — the account's version, the rejected
event — so a batch that is redone after a crash publishes the same ids and readers dedupe.
"""

from __future__ import annotations

import uuid
from datetime import UTC

from schemas.events import AccountChanged, ContractRejected, utc_now
from services.common.codec import WireRecord, encode, tombstone
from services.registration.domain.model import Account
from services.registration.domain.registry import Rejection

SOURCE = "/selfcare-access/registration"
_NAMESPACE = uuid.UUID("4f8e2b1c-6a53-4d0e-9c1f-2a7b5d3e8f60")


def account_changed(account: Account) -> WireRecord:
    c = account.contacts
    # validated as one mapping: one call into pydantic's validator, where building the nested
    # models one by one calls it four times (about a third of this function's cost)
    event = AccountChanged.model_validate({
        "event_id": uuid.uuid5(_NAMESPACE, f"account:{account.account_id}:{account.version}"),
        "occurred_at": utc_now(),
        "account_id": account.account_id,
        "contract_number": account.contract_number,
        "version": account.version,
        "status": account.status,
        "tv_product": account.tv_product,
        "login_keys": {"mobile": account.mobile_key,
                       "personal_account": account.personal_account_key},
        "channels": {"sms": account.mobile_active, "email": c.email_enc is not None},
        "contacts": {"mobile_masked": c.mobile_masked, "mobile_enc": c.mobile_enc,
                     "email_masked": c.email_masked, "email_enc": c.email_enc},
        "linked_at": account.linked_at.astimezone(UTC),  # as the CRM's offset came, in UTC
        "holder_epoch": account.holder_epoch,
        "contacts_epoch": account.contacts_epoch,
    })
    return encode(event, key=str(account.account_id), source=SOURCE)


def account_erased(account: Account) -> WireRecord:
    """The tombstone of an erased account: compaction then drops every earlier record of it."""
    return tombstone(str(account.account_id))


def contract_rejected(rejection: Rejection) -> WireRecord:
    event = ContractRejected(
        event_id=uuid.uuid5(_NAMESPACE, f"rejected:{rejection.event_id}"),
        occurred_at=utc_now(),
        contract_number=rejection.contract_number,
        rejected_event_id=rejection.event_id,
        reason=rejection.reason,
    )
    return encode(event, key=rejection.contract_number, source=SOURCE)
