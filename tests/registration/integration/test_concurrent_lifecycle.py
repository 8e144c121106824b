"""A link batch, a termination, an erasure and a reseal of one contract at once, in separate
transactions (the linking process, the worker's database thread, another worker), on SQLite and
PostgreSQL. Each holds the contracts it reads (``hold_contracts``), so none writes over what
another committed after its read: the newer event still wins, an erasure's tombstone is the
contract's last record, and no two records carry one version."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Collection
from typing import Any

from sqlalchemy import select

from schemas.events import ContractErased, ContractLinked, ContractTerminated
from schemas.topics import ACCOUNT_CHANGED
from services.common.crypto import Keyring, generate_key
from services.common.db import Database, Staged, in_transaction
from services.registration.adapters.protection import KeyringProtector
from services.registration.adapters.repository import SqlAccountRepository, SqlUnitOfWork
from services.registration.adapters.support_repository import SqlSupportRepository, SqlSupportUnitOfWork
from services.registration.adapters.tables import accounts, erasures, outbox
from services.registration.domain.model import SealedContacts
from services.registration.domain.validation import NormalisedLink
from services.registration.entrypoints.agents import to_erasure, to_link, to_termination
from services.registration.service_layer.erase_contract import erase_contracts
from services.registration.service_layer.link_contract import link_batch, link_contracts
from services.registration.service_layer.reseal import ResealAccounts
from services.registration.service_layer.terminate_contract import terminate_contracts
from tests.registration.events import erased, linked, not_after, terminated
from tests.support.workers import TEST_HASH_PEPPER, TEST_SECRET_KEYS


class SlowSeal(KeyringProtector):
    """Seals slowly: the batch's transaction stays open after it has read the accounts."""

    def __init__(self, *, keyring: Keyring) -> None:
        super().__init__(keyring=keyring)
        self.sealing = threading.Event()

    def seal(self, account_id: uuid.UUID, link: NormalisedLink) -> SealedContacts:
        self.sealing.set()
        time.sleep(0.3)
        return super().seal(account_id, link)


def link_command(event: dict[str, Any]) -> Any:
    return to_link(ContractLinked.model_validate_json(json.dumps(event)))


def published(db: Database) -> list[dict[str, Any] | None]:
    """The AccountChanged records staged, in the order a relay publishes them (outbox ids)."""
    with db.engine.connect() as conn:
        rows = conn.execute(select(outbox.c.value).where(outbox.c.topic == ACCOUNT_CHANGED)
                            .order_by(outbox.c.id)).all()
    return [None if r.value is None else json.loads(r.value) for r in rows]


async def while_a_link_is_sealing(db: Database, database_url: str, keyring: Keyring,
                                  relink: dict[str, Any], other: Any) -> list[Staged]:
    """Runs ``relink`` on its own connection and, once it has read the account and is sealing,
    ``other(uow)`` on the fixture's. Returns the outbox rows both handed over, in commit order
    (as a relay is handed them, and publishes them)."""
    second = Database(url=database_url, name="registration-second")
    try:
        handed: list[Staged] = []
        slow = SlowSeal(keyring=keyring)

        async def then_other() -> None:
            assert await asyncio.to_thread(slow.sealing.wait, 30)
            await other(SqlUnitOfWork(db=db, hand_over=handed.extend))

        await asyncio.gather(
            link_contracts([link_command(relink)], uow=SqlUnitOfWork(db=second,
                                                                      hand_over=handed.extend),
                           protector=slow, not_after=not_after()),
            then_other())
    finally:
        second.close()
    return handed


async def first_link(db: Database, keyring: Keyring, contract: str) -> None:
    await link_contracts([link_command(linked(contract))],
                         uow=SqlUnitOfWork(db=db, hand_over=lambda _: None),
                         protector=KeyringProtector(keyring=keyring), not_after=not_after())


async def test_an_erasure_during_a_link_batch_of_its_contract_is_the_contracts_last_record(
        db: Database, database_url: str, keyring: Keyring) -> None:
    await first_link(db, keyring, "CC-1")
    protector = KeyringProtector(keyring=keyring)

    async def erase(uow: SqlUnitOfWork) -> None:
        event = ContractErased.model_validate_json(json.dumps(erased("CC-1", minutes=5)))
        await erase_contracts([to_erasure(event)], uow=uow, protector=protector,
                              not_after=not_after())

    handed = await while_a_link_is_sealing(
        db, database_url, keyring, linked("CC-1", email="new@example.ru", minutes=1), erase)
    records = [None if s.record.value is None else json.loads(s.record.value)
               for s in handed if s.topic == ACCOUNT_CHANGED]
    # the link's version 2, then the tombstone: nothing of the erased contract after it
    assert [None if r is None else r["version"] for r in records] == [2, None]
    # the first link's row, never published here, went with the tombstone (the link's row
    # reached its relay before: a relay publishes it from memory, ahead of the tombstone)
    assert published(db) == [None]
    with db.engine.connect() as conn:
        assert conn.execute(select(accounts)).all() == []
        assert conn.execute(select(erasures.c.contract_number)).scalars().all() == ["CC-1"]


async def test_an_older_termination_during_a_newer_link_changes_nothing(
        db: Database, database_url: str, keyring: Keyring) -> None:
    await first_link(db, keyring, "CC-2")
    protector = KeyringProtector(keyring=keyring)

    async def terminate(uow: SqlUnitOfWork) -> None:
        event = ContractTerminated.model_validate_json(json.dumps(terminated("CC-2", minutes=2)))
        await terminate_contracts([to_termination(event)], uow=uow, protector=protector,
                                  not_after=not_after())

    await while_a_link_is_sealing(
        db, database_url, keyring, linked("CC-2", email="new@example.ru", minutes=3), terminate)
    records = [r for r in published(db) if r is not None]
    assert [(r["version"], r["status"]) for r in records] == [(1, "active"), (2, "active")]
    with db.engine.connect() as conn:
        status, version = conn.execute(select(accounts.c.status, accounts.c.version)).one()
    assert (status, version) == ("active", 2)


async def test_a_reseal_during_a_link_batch_of_a_contract_waits_for_it_and_seals_what_it_wrote(
        db: Database, database_url: str, keyring: Keyring) -> None:
    """``keys reseal`` after a key rotation while a re-link of one contract is open: the reseal
    must read the account the link wrote, not write its version over the link's."""
    await first_link(db, keyring, "CC-3")
    rotated = Keyring.from_config(secret_keys=f"{generate_key()},{TEST_SECRET_KEYS}",
                                  hash_pepper=TEST_HASH_PEPPER)

    async def flush() -> None:
        return None

    async def reseal(_uow: SqlUnitOfWork) -> None:
        support = SqlSupportUnitOfWork(db=db, hand_over=lambda _: None)
        await ResealAccounts(uow=support, keyring=rotated, flush=flush)()

    # the link seals its new contacts with the key of its worker's keyring (the old one here)
    await while_a_link_is_sealing(
        db, database_url, keyring, linked("CC-3", email="new@example.ru", minutes=1), reseal)
    versions = [r["version"] for r in published(db) if r is not None]
    assert versions == [1, 2, 3]  # the link's, then the reseal's of what the link wrote
    with db.engine.connect() as conn:
        row = conn.execute(select(accounts)).one()
    assert row.version == 3
    for token in (row.mobile_enc, row.email_enc, row.full_name_enc):
        assert rotated.sealed_with_newest(token)


async def test_a_reseal_leaves_out_no_account_when_links_take_places_inside_a_chunk(
        db: Database, keyring: Keyring) -> None:
    """Accounts linked between a chunk's first read and its locked read, with ids inside the
    chunk's range, pushed the chunk's last account out of the locked read (of ``chunk``
    accounts), and paging went on after it: that account kept its old seal, unreported."""
    rotated = Keyring.from_config(secret_keys=f"{generate_key()},{TEST_SECRET_KEYS}",
                                  hash_pepper=TEST_HASH_PEPPER)
    for n in (1, 3, 5, 7, 9):
        await link_contracts([link_command(linked(f"RS-{n}", mobile=f"+7 916 700-00-0{n}",
                                                  account=f"70000000000{n}"))],
                             uow=SqlUnitOfWork(db=db, hand_over=lambda _: None),
                             protector=KeyringProtector(keyring=keyring), not_after=not_after(),
                             new_id=lambda n=n: uuid.UUID(int=n))

    def link_inside(n: int) -> None:  # by a worker that already has the new key
        command = link_command(linked(f"RS-{n}", mobile=f"+7 916 700-00-0{n}",
                                      account=f"70000000000{n}"))
        db.run_sync(lambda s: in_transaction(SqlAccountRepository, lambda repo: link_batch(
            repo, [command], KeyringProtector(keyring=rotated), not_after(),
            lambda: uuid.UUID(int=n)), s))

    class LinksBetweenTheReads(SqlSupportRepository):
        def hold_contracts(self, numbers: Collection[str]) -> None:
            if "RS-1" in numbers and not inside:
                inside.extend([2, 4])
                for n in inside:
                    link_inside(n)
            super().hold_contracts(numbers)

    class Support(SqlSupportUnitOfWork):
        repository = LinksBetweenTheReads

    inside: list[int] = []

    async def flush() -> None:
        return None

    report = await ResealAccounts(uow=Support(db=db, hand_over=lambda _: None), keyring=rotated,
                                  flush=flush, chunk=5)()
    assert inside == [2, 4]
    assert (report.accounts, report.resealed, report.unreadable) == (5, 5, 0)
    with db.engine.connect() as conn:
        rows = conn.execute(select(accounts.c.contract_number, accounts.c.mobile_enc,
                                   accounts.c.version)).all()
    assert [r.contract_number for r in rows if not rotated.sealed_with_newest(r.mobile_enc)] == []
    assert {r.contract_number: r.version for r in rows} == {
        "RS-1": 2, "RS-2": 1, "RS-3": 2, "RS-4": 1, "RS-5": 2, "RS-7": 2, "RS-9": 2}
