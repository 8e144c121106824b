"""Preparing links in worker processes gives what ``prepare_links`` gives in this process, and a
link that opens an account is announced with the record encoded ahead."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from schemas.events import AccountChanged, ContractLinked, ContractRejectReason
from schemas.topics import ACCOUNT_CHANGED
from services.common.codec import WireRecord
from services.common.crypto import Keyring, contact_aad
from services.registration.adapters.preparation import ProcessPreparer, ThreadPreparer
from services.registration.adapters.protection import KeyringProtector
from services.registration.domain.model import Account, ProtectedLink
from services.registration.domain.registry import Rejection
from services.registration.entrypoints.messages import to_link
from services.registration.service_layer.link_contract import apply_links, prepare_links
from services.registration.service_layer.outbound import account_changed
from services.registration.service_layer.ports import PreparedLinks
from tests.registration.events import linked
from tests.registration.fakes import FakeUnitOfWork


def links(*events: dict[str, Any]) -> list[Any]:
    return [to_link(ContractLinked.model_validate_json(json.dumps(e))) for e in events]


MIXED = links(
    linked("P-1", minutes=5),
    linked("P-2", minutes=1, email=None, product="linear", account="5550 0001 23"),
    linked("P-3", minutes=3, mobile="+44 20 7946 0958"),  # foreign: invalid_mobile
    linked("P-4", minutes=2, email="no-domain@"),  # invalid_email
    linked("P-5", minutes=4, account="12AB"),  # invalid_personal_account
    linked("P-6", minutes=0, mobile="8 (903) 555-66-77", mobile_active=False, name="  Пётр   Петров "),
)


@pytest.fixture
async def processes(keyring: Keyring) -> AsyncIterator[ProcessPreparer]:
    preparer = ProcessPreparer(keyring=keyring, processes=1)
    await preparer.warm_up()
    yield preparer
    preparer.close()


def _opened_contacts(keyring: Keyring, item: ProtectedLink) -> tuple[str, str | None, str]:
    aid, c = str(item.account_id), item.contacts
    return (
        keyring.decrypt(c.mobile_enc, aad=contact_aad(aid, "mobile")),
        None if c.email_enc is None else keyring.decrypt(c.email_enc, aad=contact_aad(aid, "email")),
        keyring.decrypt(c.full_name_enc, aad=contact_aad(aid, "full_name")),
    )


async def test_worker_processes_prepare_what_this_process_prepares(
    processes: ProcessPreparer, keyring: Keyring, protector: KeyringProtector
) -> None:
    here = prepare_links(MIXED, protector)
    there = await processes.prepare(MIXED)

    assert [type(i) for i in there.items] == [type(i) for i in here.items]
    assert [i.contract_number for i in there.items] == ["P-6", "P-2", "P-4", "P-3", "P-5", "P-1"]
    assert [i.contract_number for i in here.items] == [i.contract_number for i in there.items]
    for mine, theirs in zip(here.items, there.items, strict=True):
        if isinstance(mine, Rejection):
            assert theirs == mine
            continue
        assert isinstance(theirs, ProtectedLink)
        assert theirs.account_id != mine.account_id  # each side drew a fresh id
        # the same link, keys and hashes; the contacts sealed for each side's own id
        assert replace(theirs, account_id=mine.account_id, contacts=mine.contacts) == mine
        assert _opened_contacts(keyring, theirs) == _opened_contacts(keyring, mine)
        assert theirs.contacts.mobile_masked == mine.contacts.mobile_masked
        assert theirs.contacts.email_masked == mine.contacts.email_masked
    reasons = [i.reason for i in there.items if isinstance(i, Rejection)]
    assert reasons == [ContractRejectReason.INVALID_EMAIL, ContractRejectReason.INVALID_MOBILE,
                       ContractRejectReason.INVALID_PERSONAL_ACCOUNT]


async def test_each_opening_link_comes_with_the_account_changed_of_the_account_it_opens(
    processes: ProcessPreparer,
) -> None:
    there = await processes.prepare(MIXED)
    opening = [i for i in there.items if isinstance(i, ProtectedLink)]
    assert sorted(there.opened) == sorted(i.account_id for i in opening)
    for item in opening:
        record = there.opened[item.account_id]
        ahead = AccountChanged.model_validate_json(record.value)
        now = AccountChanged.model_validate_json(account_changed(Account.open(item)).value)
        assert ahead.version == 1 and ahead.account_id == item.account_id
        assert ahead.model_dump(exclude={"occurred_at"}) == now.model_dump(exclude={"occurred_at"})
        assert record.key == str(item.account_id).encode()
        assert dict(record.headers)["ce_id"] == str(ahead.event_id).encode()


async def test_the_thread_preparer_is_prepare_links_without_records_ahead(keyring: Keyring) -> None:
    prepared = await ThreadPreparer(keyring=keyring).prepare(MIXED)
    assert [i.contract_number for i in prepared.items] == ["P-6", "P-2", "P-4", "P-3", "P-5", "P-1"]
    assert prepared.opened == {}


async def test_a_record_encoded_ahead_is_published_only_for_the_state_it_describes(
    protector: KeyringProtector,
) -> None:
    first, again = links(linked("A-1", minutes=0), linked("A-1", minutes=1, email="new@example.ru"))
    solo, = links(linked("B-1", minutes=0, mobile="+7 903 111-22-33", account="222222222222"))
    prepared = prepare_links([first, again, solo], protector)
    ahead = {
        i.account_id: WireRecord(key=b"ahead", value=str(i.account_id).encode(), headers=[])
        for i in prepared.items if isinstance(i, ProtectedLink)
    }
    uow = FakeUnitOfWork()
    await apply_links(PreparedLinks(prepared.items, ahead), uow=uow, protector=protector)

    published = [r for topic, r in uow.repo.staged if topic == ACCOUNT_CHANGED]
    b1 = uow.repo.accounts["B-1"]
    assert b1.version == 1
    assert WireRecord(key=b"ahead", value=str(b1.account_id).encode(), headers=[]) in published
    a1 = uow.repo.accounts["A-1"]  # opened and re-linked in one batch: version 2, encoded now
    [encoded] = [r for r in published if r.key != b"ahead"]
    event = AccountChanged.model_validate_json(encoded.value)
    assert (event.account_id, event.version) == (a1.account_id, 2)
    assert uuid.UUID(str(event.account_id)) not in {
        uuid.UUID(r.value.decode()) for r in published if r.key == b"ahead"
    }
