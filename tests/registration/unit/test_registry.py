"""The handlers with fakes: batch rules, outputs, and what the protector hides."""

from __future__ import annotations

import json
from typing import Any

from schemas.events import (
    AccountChanged,
    ContractErased,
    ContractLinked,
    ContractRejected,
    ContractTerminated,
)
from schemas.topics import ACCOUNT_CHANGED, CONTRACT_REJECTED
from services.common.crypto import Keyring, contact_aad
from services.common.logins import LoginKind, login_key
from services.registration.adapters.protection import KeyringProtector
from services.registration.domain.model import Outcome
from services.registration.entrypoints.agents import to_erasure, to_link, to_termination
from services.registration.service_layer.erase_contract import erase_contracts
from services.registration.service_layer.link_contract import link_contracts
from services.registration.service_layer.terminate_contract import terminate_contracts
from tests.registration.events import erased, linked, not_after, terminated
from tests.registration.fakes import FakeUnitOfWork


def links(*events: dict[str, Any]) -> list[Any]:
    return [to_link(ContractLinked.model_validate_json(json.dumps(e))) for e in events]


async def test_account_changed_carries_keys_channels_and_sealed_contacts(
    keyring: Keyring, protector: KeyringProtector
) -> None:
    uow = FakeUnitOfWork()
    await link_contracts(links(linked("77-1", mobile="8 916 123 45 67", mobile_active=False)),
                         uow=uow, protector=protector, not_after=not_after())
    [(topic, record)] = uow.repo.staged
    assert topic == ACCOUNT_CHANGED
    event = AccountChanged.model_validate_json(record.value)
    assert record.key == str(event.account_id).encode()
    assert event.login_keys.mobile == login_key(keyring, LoginKind.MOBILE, "+79161234567")
    assert event.login_keys.personal_account == login_key(keyring, LoginKind.PERSONAL_ACCOUNT, "123456789012")
    assert (event.channels.sms, event.channels.email) == (False, True)
    aid = str(event.account_id)
    assert keyring.decrypt(event.contacts.mobile_enc, aad=contact_aad(aid, "mobile")) == "+79161234567"
    assert event.contacts.email_enc is not None
    assert keyring.decrypt(event.contacts.email_enc, aad=contact_aad(aid, "email")) == "ivanov@example.ru"
    assert (event.contacts.mobile_masked, event.contacts.email_masked) == ("+7******4567", "i*****v@example.ru")
    assert b"9161234567" not in record.value and b"ivanov@" not in record.value


async def test_events_of_one_contract_in_one_batch_go_in_time_order(protector: KeyringProtector) -> None:
    uow = FakeUnitOfWork()
    batch = links(linked("77-1", minutes=30, mobile="+7 903 555-66-77"), linked("77-1", minutes=10))
    assert await link_contracts(batch, uow=uow, protector=protector, not_after=not_after()) == {
        Outcome.CREATED: 1, Outcome.UPDATED: 1
    }
    assert uow.repo.accounts["77-1"].contacts.mobile_masked == "+7******6677"
    assert [AccountChanged.model_validate_json(r.value).version for _, r in uow.repo.staged] == [2]


async def test_rejections_name_the_crm_event(protector: KeyringProtector) -> None:
    uow = FakeUnitOfWork()
    first, clash = linked("77-1"), linked("77-2", minutes=1, account="99999999")
    await link_contracts(links(first, clash), uow=uow, protector=protector, not_after=not_after())
    rejected = [ContractRejected.model_validate_json(r.value) for t, r in uow.repo.staged
                if t == CONTRACT_REJECTED]
    assert [(r.contract_number, str(r.rejected_event_id), r.reason.value) for r in rejected] == [
        ("77-2", clash["event_id"], "login_conflict")
    ]


async def test_a_redone_batch_publishes_the_same_event_ids(protector: KeyringProtector) -> None:
    """A batch redone before its commit derives the same output ids, so readers can dedupe."""
    stop = terminated("77-3")
    command = to_termination(ContractTerminated.model_validate_json(json.dumps(stop)))
    ids = []
    for uow in (FakeUnitOfWork(), FakeUnitOfWork()):
        await terminate_contracts([command], uow=uow, protector=protector, not_after=not_after())
        [(topic, record)] = uow.repo.staged
        assert topic == CONTRACT_REJECTED
        ids.append(json.loads(record.value)["event_id"])
    assert ids[0] == ids[1] and ids[0] != stop["event_id"]


async def test_termination_and_erasure_count_repeats_refuse_the_future_and_apply_the_rest_once(
    protector: KeyringProtector,
) -> None:
    uow = FakeUnitOfWork()
    await link_contracts(links(linked("T-1"), linked("E-1", mobile="+7 903 111-22-33",
                                                       account="222222222222")),
                         uow=uow, protector=protector, not_after=not_after())
    again = terminated("T-1")
    ahead = {**terminated("T-1", minutes=90), "occurred_at": "2099-01-01T00:00:00Z"}
    batch = [to_termination(ContractTerminated.model_validate_json(json.dumps(e)))
             for e in (again, again, ahead)]
    assert await terminate_contracts(batch, uow=uow, protector=protector, not_after=not_after()) == {
        Outcome.CLOSED: 1, Outcome.DUPLICATE: 1, Outcome.REJECTED: 1}
    assert await terminate_contracts(batch[:1], uow=uow, protector=protector,
                                     not_after=not_after()) == {Outcome.DUPLICATE: 1}
    gone = erased("E-1")
    erasures = [to_erasure(ContractErased.model_validate_json(json.dumps(e))) for e in (gone, gone)]
    assert await erase_contracts(erasures, uow=uow, protector=protector, not_after=not_after()) == {
        Outcome.ERASED: 1, Outcome.DUPLICATE: 1}
    reasons = [ContractRejected.model_validate_json(r.value).reason for t, r in uow.repo.staged
               if t == CONTRACT_REJECTED]
    assert reasons == ["invalid_event_time"]
