"""A personal account that reads as an active mobile, and the reverse, refused on SQLite and
PostgreSQL through the real link path (``alias_key`` stored and looked up by the adapter)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

from sqlalchemy import select

from schemas.events import ContractLinked, ContractRejected
from schemas.topics import CONTRACT_REJECTED
from services.common.crypto import Keyring
from services.common.db import Database, Staged
from services.registration.adapters.protection import KeyringProtector
from services.registration.adapters.repository import SqlUnitOfWork
from services.registration.adapters.tables import accounts
from services.registration.domain.model import Outcome, SealedContacts
from services.registration.domain.validation import NormalisedLink
from services.registration.entrypoints.agents import to_link
from services.registration.service_layer.link_contract import link_contracts
from tests.registration.events import linked, not_after


async def test_a_login_that_reads_both_ways_is_held_by_one_active_account(
        db: Database, protector: KeyringProtector) -> None:
    handed: list[Staged] = []
    uow = SqlUnitOfWork(db=db, hand_over=handed.extend)

    async def link(*events: dict[str, Any]) -> dict[Outcome, int]:
        commands = [to_link(ContractLinked.model_validate_json(json.dumps(e))) for e in events]
        return dict(await link_contracts(commands, uow=uow, protector=protector,
                                         not_after=not_after()))

    assert await link(linked("L-1", product="linear", account="89161110003",
                             mobile="+7 903 222-33-44")) == {Outcome.CREATED: 1}
    # across batches: the interactive account with that mobile is refused
    assert await link(linked("I-1", mobile="+7 (916) 111-00-03", account="555000000001",
                             minutes=1)) == {Outcome.REJECTED: 1}
    # and the reverse: a personal account that reads as an active interactive account's mobile
    assert await link(linked("I-2", mobile="+7 916 111-00-04", account="555000000002")) == {
        Outcome.CREATED: 1}
    assert await link(linked("L-2", product="satellite", account="789161110004",
                             mobile="+7 903 222-33-45", minutes=1)) == {Outcome.REJECTED: 1}
    rejected = [ContractRejected.model_validate_json(s.record.value or b"") for s in handed
                if s.topic == CONTRACT_REJECTED]
    assert [(r.contract_number, r.reason) for r in rejected] == [("I-1", "login_conflict"),
                                                                ("L-2", "login_conflict")]
    with db.engine.connect() as conn:
        rows = conn.execute(select(accounts.c.contract_number, accounts.c.alias_key)
                            .order_by(accounts.c.contract_number)).all()
    assert [(n, a is not None) for n, a in rows] == [("I-2", False), ("L-1", True)]


class SlowSeal(KeyringProtector):
    """Seals slowly: the batch's transaction stays open after it has read the holders.
    ``sealing`` is set once it seals (its holds taken and the holders read)."""

    def __init__(self, *, keyring: Keyring) -> None:
        super().__init__(keyring=keyring)
        self.sealing = threading.Event()

    def seal(self, account_id: uuid.UUID, link: NormalisedLink) -> SealedContacts:
        self.sealing.set()
        time.sleep(0.2)
        return super().seal(account_id, link)


async def test_two_workers_linking_both_readings_at_once_keep_one_of_each_pair(
        db: Database, database_url: str, keyring: Keyring) -> None:
    """Worker 1 links five personal accounts that read as mobiles and is still sealing when
    worker 2 links the five interactive accounts with those mobiles: no unique index sees this
    conflict, so worker 2 must wait for worker 1 (``hold``), then refuse all five."""
    other = Database(url=database_url, name="readings-other")
    try:
        handed: list[Staged] = []
        first = SqlUnitOfWork(db=db, hand_over=handed.extend)
        second = SqlUnitOfWork(db=other, hand_over=handed.extend)
        personal = [linked(f"L-{i}", product="linear", account=f"8916111000{i}",
                           mobile="+7 903 222-33-44") for i in range(5)]
        mobiles = [linked(f"I-{i}", mobile=f"+7916111000{i}", account=f"55500000000{i}")
                   for i in range(5)]

        slow = SlowSeal(keyring=keyring)

        async def link(uow: SqlUnitOfWork, protector: KeyringProtector,
                       events: list[dict[str, Any]], after: threading.Event | None) -> dict[Outcome, int]:
            if after is not None:  # worker 2 starts once worker 1 holds the readings and is sealing
                assert await asyncio.to_thread(after.wait, 30), "worker 1 never sealed"
            commands = [to_link(ContractLinked.model_validate_json(json.dumps(e))) for e in events]
            return dict(await link_contracts(commands, uow=uow, protector=protector,
                                             not_after=not_after()))

        results = await asyncio.gather(link(first, slow, personal, None),
                                       link(second, KeyringProtector(keyring=keyring), mobiles, slow.sealing))
        assert results == [{Outcome.CREATED: 5}, {Outcome.REJECTED: 5}]
        with db.engine.connect() as conn:
            active = conn.execute(select(accounts.c.contract_number)
                                  .where(accounts.c.status == "active")).scalars().all()
        assert sorted(active) == [f"L-{i}" for i in range(5)]
    finally:
        other.close()
