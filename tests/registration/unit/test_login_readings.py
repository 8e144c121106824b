"""A personal account whose digits are also a mobile (``89161110003``): typed as a login it
reaches both the linear-TV account with that personal account and the interactive-TV account
with that mobile, so registration keeps at most one of the two active (``login_conflict``), in
either order, within a batch and across batches; two personal accounts that read as one mobile
do not conflict with each other (each typing reaches its own)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from schemas.events import ContractLinked, ContractRejected, ContractTerminated
from schemas.topics import CONTRACT_REJECTED
from services.registration.adapters.protection import KeyringProtector
from services.registration.domain.model import Outcome
from services.registration.entrypoints.agents import to_link, to_termination
from services.registration.service_layer.link_contract import link_contracts
from services.registration.service_layer.terminate_contract import terminate_contracts
from tests.registration.events import linked, not_after, terminated
from tests.registration.fakes import FakeUnitOfWork

MOBILE = "+7 916 111-00-03"


def interactive(contract: str, minutes: int = 0, mobile: str = MOBILE) -> dict[str, Any]:
    return linked(contract, mobile=mobile, account=f"5550{minutes:08d}", minutes=minutes)


def linear(contract: str, account: str, minutes: int = 0) -> dict[str, Any]:
    return linked(contract, product="linear", account=account, mobile="+7 903 222-33-44",
                  minutes=minutes)


async def link(uow: FakeUnitOfWork, protector: KeyringProtector,
               *events: dict[str, Any]) -> Counter[Outcome]:
    commands = [to_link(ContractLinked.model_validate_json(json.dumps(e))) for e in events]
    return await link_contracts(commands, uow=uow, protector=protector, not_after=not_after())


def conflicts(uow: FakeUnitOfWork) -> list[str]:
    return [ContractRejected.model_validate_json(r.value).contract_number
            for t, r in uow.repo.staged
            if t == CONTRACT_REJECTED and r.value is not None
            and ContractRejected.model_validate_json(r.value).reason == "login_conflict"]


async def test_a_personal_account_that_reads_as_an_active_mobile_is_refused(
        protector: KeyringProtector) -> None:
    for typed in ("89161110003", "79161110003", "9161110003"):
        uow = FakeUnitOfWork()
        assert await link(uow, protector, interactive("I-1")) == {Outcome.CREATED: 1}
        assert await link(uow, protector, linear("L-1", typed, minutes=1)) == {Outcome.REJECTED: 1}
        assert conflicts(uow) == ["L-1"], typed


async def test_a_mobile_that_an_active_personal_account_reads_as_is_refused(
        protector: KeyringProtector) -> None:
    uow = FakeUnitOfWork()
    assert await link(uow, protector, linear("L-1", "89161110003")) == {Outcome.CREATED: 1}
    assert await link(uow, protector, interactive("I-1", minutes=1)) == {Outcome.REJECTED: 1}
    # the same in one batch, in either order: the earlier link holds the login
    for first, second in ((linear("L-2", "9161110004"), interactive("I-2", 1, "+79161110004")),
                          (interactive("I-3", 0, "89161110005"), linear("L-3", "79161110005", 1))):
        assert await link(uow, protector, second, first) == {Outcome.CREATED: 1, Outcome.REJECTED: 1}
    assert conflicts(uow) == ["I-1", "I-2", "L-3"]


async def test_only_the_mobile_logins_are_looked_up_as_aliases(protector: KeyringProtector) -> None:
    """A personal account's login key is of another kind than any alias (a mobile's key)."""
    uow = FakeUnitOfWork()
    await link(uow, protector, interactive("I-1"), linear("L-1", "89161110009", minutes=1),
               linear("L-2", "555000111", minutes=2))
    [mobile] = [a.login_key for a in uow.repo.accounts.values() if a.contract_number == "I-1"]
    assert uow.repo.alias_asked == {mobile}


async def test_the_login_is_free_again_once_the_holder_ends_or_moves(protector: KeyringProtector) -> None:
    uow = FakeUnitOfWork()
    await link(uow, protector, linear("L-1", "89161110003"), interactive("I-9", 0, "+79031112233"))
    terminate = [to_termination(ContractTerminated.model_validate_json(json.dumps(terminated("L-1"))))]
    await terminate_contracts(terminate, uow=uow, protector=protector, not_after=not_after())
    assert await link(uow, protector, interactive("I-1", minutes=70)) == {Outcome.CREATED: 1}
    # an interactive account that moves to another mobile frees its mobile for the personal account
    await link(uow, protector, interactive("I-1", minutes=80, mobile="+7 916 999-00-01"))
    assert await link(uow, protector, linear("L-2", "89161110003", minutes=90)) == {Outcome.CREATED: 1}
    # and a personal account re-linked to digits that read as no mobile frees that mobile
    await link(uow, protector, linear("L-2", "123456789012", minutes=100))
    assert await link(uow, protector, interactive("I-1", minutes=110)) == {Outcome.UPDATED: 1}
    assert conflicts(uow) == []


async def test_two_personal_accounts_that_read_as_one_mobile_do_not_conflict(
        protector: KeyringProtector) -> None:
    uow = FakeUnitOfWork()
    assert await link(uow, protector, linear("L-1", "89161110003"), linear("L-2", "9161110003"),
                      linear("L-3", "79161110003", minutes=1)) == {Outcome.CREATED: 3}
    # the mobile they read as is now out of reach for an interactive account
    assert await link(uow, protector, interactive("I-1", minutes=2)) == {Outcome.REJECTED: 1}
