"""``account_changed``: the account's state as the schema's event, with CloudEvents headers."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas.events import AccountChanged, AccountStatus, ContractLinked
from services.registration.adapters.protection import KeyringProtector
from services.registration.domain.model import Account
from services.registration.domain.validation import normalise_link
from services.registration.entrypoints.agents import to_link
from services.registration.service_layer.outbound import account_changed
from tests.registration.events import linked


def opened(protector: KeyringProtector, **kwargs: object) -> Account:
    command = to_link(ContractLinked.model_validate_json(json.dumps(linked("O-1", **kwargs))))  # type: ignore[arg-type]
    normalised = normalise_link(command)
    account_id = uuid.uuid4()
    return Account.open(account_id=account_id, link=protector.protect(normalised),
                        contacts=protector.seal(account_id, normalised))


@pytest.mark.parametrize("kwargs", [
    {},
    {"email": None, "product": "satellite", "mobile_active": False},
    {"email": "Пётр.Иванов@почта.рф", "name": "Пётр"},
    {"email": "o'brien+tv@Example.RU"},
])
def test_the_record_is_the_schema_event(protector: KeyringProtector, kwargs: dict[str, object]) -> None:
    account = opened(protector, **kwargs)
    record = account_changed(account)
    event = AccountChanged.model_validate_json(record.value)  # valid against the schema
    c = account.contacts
    assert (event.account_id, event.contract_number, event.version, event.status, event.tv_product) == (
        account.account_id, account.contract_number, 1, account.status, account.tv_product)
    assert (event.login_keys.mobile, event.login_keys.personal_account) == (
        account.mobile_key, account.personal_account_key)
    assert (event.channels.sms, event.channels.email) == (account.mobile_active, c.email_enc is not None)
    assert (event.contacts.mobile_enc, event.contacts.mobile_masked) == (c.mobile_enc, c.mobile_masked)
    assert (event.contacts.email_enc, event.contacts.email_masked) == (c.email_enc, c.email_masked)
    assert event.linked_at == account.linked_at
    assert ("email_enc" in json.loads(record.value)["contacts"]) == (c.email_enc is not None)
    assert record.key == str(account.account_id).encode()
    headers = dict(record.headers)
    assert headers["ce_id"] == str(event.event_id).encode()
    assert headers["ce_type"] == b"selfcare.AccountChanged.v1"
    assert headers["content-type"] == b"application/json"


def test_ids_are_derived_from_the_account_and_version(protector: KeyringProtector) -> None:
    account = opened(protector)
    first = AccountChanged.model_validate_json(account_changed(account).value)
    again = AccountChanged.model_validate_json(account_changed(account).value)
    assert first.event_id == again.event_id == uuid.uuid5(
        uuid.UUID("4f8e2b1c-6a53-4d0e-9c1f-2a7b5d3e8f60"), f"account:{account.account_id}:1"
    )
    closed = replace(account, status=AccountStatus.CLOSED, version=2,
                     closed_at=datetime(2026, 11, 25, tzinfo=UTC))
    later = AccountChanged.model_validate_json(account_changed(closed).value)
    assert later.event_id != first.event_id and later.status is AccountStatus.CLOSED


def test_times_are_written_in_utc(protector: KeyringProtector) -> None:
    account = opened(protector)
    moscow = timezone(timedelta(hours=3))
    account.linked_at = datetime(2026, 11, 24, 12, 30, 15, 250000, tzinfo=moscow)
    body = json.loads(account_changed(account).value)
    assert body["linked_at"] == "2026-11-24T09:30:15.250000Z"
    assert body["occurred_at"].endswith("Z")
