"""Support's identity check on SQLite and PostgreSQL, over accounts written by the real link path.

Match, each kind of mismatch (one same answer), the name rule (case, spaces, ё/е), by mobile,
and the per-account limit under simultaneous attempts from two workers sharing the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from schemas.events import ContractErased, ContractLinked, ContractTerminated
from services.common.crypto import Keyring
from services.common.db import Database
from services.common.migrations import migrate
from services.registration.adapters.protection import KeyringProtector
from services.registration.adapters.repository import SqlUnitOfWork
from services.registration.adapters.support_repository import SqlSupportUnitOfWork
from services.registration.adapters.support_tables import windows
from services.registration.adapters.tables import MIGRATIONS, accounts
from services.registration.entrypoints.agents import to_erasure, to_link, to_termination
from services.registration.service_layer.erase_contract import erase_contracts
from services.registration.service_layer.identify import (
    IdentifyCommand,
    IdentifyHolder,
    Verdict,
    normalise_name,
)
from services.registration.service_layer.link_contract import link_contracts
from services.registration.service_layer.terminate_contract import terminate_contracts
from tests.registration.events import erased, linked, not_after, terminated

PASSPORT = "4510 123456"
NAME = "Семёнов Пётр Иванович"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(url=database_url, name=f"identify-{uuid.uuid4().hex[:6]}")
    migrate(database.engine, MIGRATIONS)
    yield database
    database.close()


async def link(db: Database, keyring: Keyring, *events: dict[str, Any]) -> None:
    commands = [to_link(ContractLinked.model_validate_json(json.dumps(e))) for e in events]
    await link_contracts(commands, uow=SqlUnitOfWork(db=db, hand_over=lambda rows: None),
                         protector=KeyringProtector(keyring=keyring), not_after=not_after())


def holder(db: Database, keyring: Keyring, max_attempts: int = 50) -> IdentifyHolder:
    return IdentifyHolder(uow=SqlSupportUnitOfWork(db=db, hand_over=lambda rows: None),
                          keyring=keyring, max_attempts=max_attempts, window_s=3600)


def ask(**kwargs: str) -> IdentifyCommand:
    fields = {"operator": "op-7", "passport": PASSPORT, "full_name": NAME, **kwargs}
    return IdentifyCommand(**fields)  # type: ignore[arg-type]


def test_names_compare_without_case_spaces_or_yo() -> None:
    assert normalise_name("  СЕМЁНОВ   пётр\tИванович ") == normalise_name("Семенов Петр Иванович")
    assert normalise_name("Семенов Петр") != normalise_name("Семенова Петра")


async def test_a_match_gives_the_personal_account_and_the_login_of_the_product(
    db: Database, keyring: Keyring
) -> None:
    await link(db, keyring,
               linked("ID-1", name=NAME, account="111122223333", mobile="+7 916 400-00-01"),
               linked("ID-2", name=NAME, account="444455556666", product="linear",
                      mobile="+7 916 400-00-02"))
    check = holder(db, keyring)
    iptv = await check(ask(contract="ID-1"))
    assert iptv.as_json() == {"verdict": "confirmed", "tv_product": "interactive",
                              "login_kind": "mobile", "login": "+7******0001",
                              "personal_account": "111122223333"}
    cable = await check(ask(mobile="8 (916) 400-00-02", full_name="семенов  ПЕТР иванович",
                            passport="4510123456"))
    assert cable.as_json() == {"verdict": "confirmed", "tv_product": "linear",
                               "login_kind": "personal_account", "login": "444455556666",
                               "personal_account": "444455556666"}


async def test_every_mismatch_is_the_same_not_confirmed(db: Database, keyring: Keyring) -> None:
    await link(db, keyring, linked("ID-3", name=NAME, mobile="+7 916 400-00-03"))
    check = holder(db, keyring)
    answers = [
        await check(ask(contract="ID-3", passport="4510 123457")),  # wrong passport
        await check(ask(contract="ID-3", full_name="Семёнов Павел Иванович")),  # wrong name
        await check(ask(contract="ID-404")),  # unknown contract
        await check(ask(mobile="+7 916 400-99-99")),  # unknown mobile
        await check(ask(mobile="not a phone")),
    ]
    assert [a.as_json() for a in answers] == [{"verdict": "not_confirmed"}] * len(answers)
    assert (await check(ask(contract="ID-3"))).verdict is Verdict.CONFIRMED


async def test_the_limit_per_account_is_exact_with_simultaneous_attempts_on_two_workers(
    db: Database, keyring: Keyring, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await link(db, keyring, linked("ID-5", name=NAME, mobile="+7 916 400-00-05"))
    other = Database(url=database_url, name="identify-other")
    caplog.set_level(logging.INFO)
    try:
        workers = [holder(db, keyring, max_attempts=5), holder(other, keyring, max_attempts=5)]
        answers = await asyncio.gather(*[
            workers[i % 2](ask(contract="ID-5", passport="4510 00000" + str(i % 10)))
            for i in range(12)])
        verdicts = [a.verdict for a in answers]
        assert verdicts.count(Verdict.NOT_CONFIRMED) == 5
        assert verdicts.count(Verdict.RATE_LIMITED) == 7
        # the right passport is refused too, by contract and by mobile: the limit is the account's
        late = [await workers[0](ask(contract="ID-5")), await workers[1](ask(mobile="+79164000005"))]
        assert {a.verdict for a in late} == {Verdict.RATE_LIMITED}
        assert all(a.retry_after_s and 0 < a.retry_after_s <= 3600 for a in late)
        # an unknown contract is limited the same way (the limit tells nothing either)
        unknown = [await workers[0](ask(contract="ID-999")) for _ in range(6)]
        assert [a.verdict for a in unknown][-1] is Verdict.RATE_LIMITED
    finally:
        other.close()
    lines = [r for r in caplog.records if r.getMessage() == "identity check"]
    assert len(lines) == 20 and {r.__dict__["operator"] for r in lines} == {"op-7"}
    # what the code put in each line: its message and its extra fields, unredacted. The standard
    # attributes (times, thread and process ids) are left out: their digits can hold "4510".
    standard = set(vars(logging.makeLogRecord({})))
    logged = " ".join(
        json.dumps({k: v for k, v in vars(r).items() if k not in standard} | {"msg": r.getMessage()},
                   default=str, ensure_ascii=False)
        for r in lines)
    assert "account_id" in logged and "verdict" in logged
    assert "Семёнов" not in logged and "4510" not in logged and "123456" not in logged


async def test_an_erasure_forgets_the_checks_counted_by_mobile_and_by_contract(
    db: Database, keyring: Keyring
) -> None:
    """A terminated contract has no active account: support's checks of it are counted under
    the keyed hash of the mobile or of the contract number. Its erasure forgets those counts
    too, not only the account's own."""
    await link(db, keyring, linked("ER-1", name=NAME, mobile="+7 916 500-00-09"))
    uow = SqlUnitOfWork(db=db, hand_over=lambda rows: None)
    protector = KeyringProtector(keyring=keyring)
    await terminate_contracts([to_termination(ContractTerminated.model_validate_json(
        json.dumps(terminated("ER-1"))))], uow=uow, protector=protector, not_after=not_after())
    check = holder(db, keyring)
    await check(ask(mobile="+7 916 500-00-09"))
    await check(ask(contract="ER-1"))
    assert len(await subjects(db)) == 2
    await erase_contracts([to_erasure(ContractErased.model_validate_json(
        json.dumps(erased("ER-1"))))], uow=uow, protector=protector, not_after=not_after())
    assert await subjects(db) == []


async def subjects(db: Database) -> list[str]:
    return await db.run(lambda s: list(s.execute(select(windows.c.subject)).scalars()))


async def test_a_refused_check_by_a_shared_mobile_takes_nothing_of_the_other_account(
        db: Database, keyring: Keyring) -> None:
    """Two contracts share a mobile. A check by the mobile counts on both accounts or on neither:
    once one has no room left, refusals by the mobile leave the other's checks untouched."""
    await link(db, keyring,
               linked("SH-1", name=NAME, account="111122223333", product="linear",
                      mobile="+7 916 400-00-11"),
               linked("SH-2", name=NAME, account="444455556666", product="satellite",
                      mobile="+7 916 400-00-11"))
    check = holder(db, keyring, max_attempts=5)
    # the checks were counted in account-id order: the account sorted last is filled, so that a
    # refusal takes place after the other account's count was taken
    [first, last] = await db.run(lambda s: [r.contract_number for r in s.execute(
        select(accounts.c.contract_number).order_by(accounts.c.account_id))])

    def wrong(**by: str) -> IdentifyCommand:
        return IdentifyCommand(operator="op-1", passport="4510 000000", full_name=NAME, **by)

    for _ in range(5):
        assert (await check(wrong(contract=last))).verdict is Verdict.NOT_CONFIRMED
    for _ in range(5):
        assert (await check(wrong(mobile="+7 916 400-00-11"))).verdict is Verdict.RATE_LIMITED
    answer = await check(IdentifyCommand(operator="op-1", passport=PASSPORT, full_name=NAME,
                                         contract=first))
    assert answer.verdict is Verdict.CONFIRMED
