"""Support's operations on fakes: the identity check (what it confirms, what it refuses and how
alike, the limit per account and window) and the reseal after a key rotation."""

from __future__ import annotations

import json
from typing import Any

from schemas.events import AccountChanged, ContractLinked
from schemas.topics import ACCOUNT_CHANGED
from services.common.crypto import Keyring, contact_aad, generate_key
from services.registration.adapters.protection import KeyringProtector
from services.registration.entrypoints.agents import to_link
from services.registration.service_layer.identify import IdentifyCommand, IdentifyHolder, Verdict
from services.registration.service_layer.link_contract import link_contracts
from services.registration.service_layer.reseal import ResealAccounts
from tests.registration.events import linked, not_after
from tests.registration.fakes import FakeSupportUnitOfWork, FakeUnitOfWork
from tests.support.workers import TEST_HASH_PEPPER, TEST_SECRET_KEYS

NAME = "Семёнов Пётр Ильич"


async def linked_accounts(keyring: Keyring, *events: dict[str, Any]) -> FakeUnitOfWork:
    uow = FakeUnitOfWork()
    commands = [to_link(ContractLinked.model_validate_json(json.dumps(e))) for e in events]
    await link_contracts(commands, uow=uow, protector=KeyringProtector(keyring=keyring),
                         not_after=not_after())
    return uow


def ask(**fields: Any) -> IdentifyCommand:
    return IdentifyCommand(**{"operator": "op-1", "passport": "4510 123456", "full_name": NAME,
                              **fields})


async def test_only_the_right_passport_and_name_confirm_and_every_miss_looks_the_same(
        keyring: Keyring) -> None:
    accounts = await linked_accounts(
        keyring, linked("S-1", name=NAME, product="linear", mobile="+7 916 500-00-01"))
    check = IdentifyHolder(uow=FakeSupportUnitOfWork(accounts), keyring=keyring,
                           max_attempts=50, window_s=3600)
    confirmed = await check(ask(contract="S-1", full_name="  СЕМЕНОВ   пётр ильич "))
    assert confirmed.as_json() == {"verdict": "confirmed", "tv_product": "linear",
                                   "login_kind": "personal_account", "login": "123456789012",
                                   "personal_account": "123456789012"}
    assert (await check(ask(mobile="8 (916) 500-00-01"))).verdict is Verdict.CONFIRMED
    misses = [ask(contract="S-1", passport="4510 123457"), ask(contract="S-1", full_name="Семёнов Пётр"),
              ask(contract="S-404"), ask(mobile="+79165000002"), ask(mobile="not a phone")]
    assert [(await check(m)).as_json() for m in misses] == [{"verdict": "not_confirmed"}] * 5


async def test_checks_are_limited_per_account_in_a_sliding_window_whichever_lookup_is_used(
        keyring: Keyring) -> None:
    accounts = await linked_accounts(keyring, linked("S-2", name=NAME, mobile="+7 916 500-00-02"))
    now = [7200.0 + 100]
    check = IdentifyHolder(uow=FakeSupportUnitOfWork(accounts), keyring=keyring,
                           max_attempts=3, window_s=3600, clock=lambda: now[0])
    wrong = [await check(ask(contract="S-2", passport="4510 000000")) for _ in range(2)]
    assert {a.verdict for a in wrong} == {Verdict.NOT_CONFIRMED}
    now[0] += 99.5
    assert (await check(ask(mobile="+79165000002"))).verdict is Verdict.CONFIRMED  # the third
    refused = await check(ask(contract="S-2"))  # the right answer, but over the limit
    # the first check leaves the window 3600 s after it was made, 3500.5 s from now: rounded up
    assert refused.as_json() == {"verdict": "rate_limited", "retry_after_s": 3501}
    now[0] = 7300.0 + 3600  # the first two left: two more fit, not three
    assert [(await check(ask(contract="S-2"))).verdict for _ in range(3)] == [
        Verdict.CONFIRMED, Verdict.CONFIRMED, Verdict.RATE_LIMITED]


async def test_reseal_seals_every_contact_with_the_newest_key_once_and_counts_the_unreadable(
        keyring: Keyring) -> None:
    accounts = await linked_accounts(keyring, *(
        linked(f"R-{i}", mobile=f"+7 916 600-00-0{i}", account=f"60000000000{i}") for i in range(5)))
    lost = Keyring.from_config(secret_keys=generate_key(), hash_pepper=TEST_HASH_PEPPER)
    stranger = (await linked_accounts(lost, linked("R-9", mobile="+7 916 600-00-09"))).repo
    accounts.repo.accounts["R-9"] = stranger.accounts["R-9"]  # sealed with a key no one holds
    accounts.repo.staged.clear()
    rotated = Keyring.from_config(secret_keys=f"{generate_key()},{TEST_SECRET_KEYS}",
                                  hash_pepper=TEST_HASH_PEPPER)
    flushes: list[int] = []

    async def flush() -> None:
        flushes.append(len(accounts.repo.staged))

    reseal = ResealAccounts(uow=FakeSupportUnitOfWork(accounts), keyring=rotated, flush=flush, chunk=2)
    report = await reseal()
    assert (report.accounts, report.resealed, report.unreadable) == (6, 5, 1)
    assert report.key_id == rotated.newest_key_id
    # each chunk's records are published after its transaction: 3 chunks of 2, then an empty one
    assert len(flushes) == 4 and flushes == sorted(flushes) and flushes[-1] == 5
    assert all(b - a <= 2 for a, b in zip([0, *flushes], flushes, strict=False))
    events = [AccountChanged.model_validate_json(r.value or b"") for t, r in accounts.repo.staged
              if t == ACCOUNT_CHANGED]
    assert sorted(e.contract_number for e in events) == [f"R-{i}" for i in range(5)]
    assert {e.version for e in events} == {2}
    for event in events:
        aid, contacts = str(event.account_id), event.contacts
        assert rotated.sealed_with_newest(contacts.mobile_enc)
        assert rotated.decrypt(contacts.mobile_enc, aad=contact_aad(aid, "mobile")).startswith("+7916600000")
    for account in accounts.repo.accounts.values():
        if account.contract_number != "R-9":
            assert all(rotated.sealed_with_newest(t) for t in (
                account.contacts.mobile_enc, account.contacts.full_name_enc,
                account.contacts.personal_account_enc, account.contacts.email_enc) if t)
    again = await ResealAccounts(uow=FakeSupportUnitOfWork(accounts), keyring=rotated,
                                 flush=flush, chunk=2)()
    assert (again.accounts, again.resealed, again.unreadable) == (6, 0, 1)
    assert len(accounts.repo.staged) == 5  # nothing re-published
