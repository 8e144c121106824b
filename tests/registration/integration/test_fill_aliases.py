"""The aliases of accounts linked before registration's revision 0002 (``alias_key`` NULL), filled
once at the worker's start, on SQLite and PostgreSQL: before the fill a new interactive link takes
the mobile that an older personal account reads as; after it, such a link is refused, a pair that
already stands is named in a WARNING line (account ids only), and a second start does nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import select, update

from schemas.events import ContractLinked
from services.common.crypto import Keyring
from services.common.db import Database, Staged
from services.registration.adapters.protection import KeyringProtector
from services.registration.adapters.repository import SqlUnitOfWork
from services.registration.adapters.support_repository import SqlSupportUnitOfWork
from services.registration.adapters.tables import accounts, backfills
from services.registration.bootstrap import fill_until_done
from services.registration.domain.model import Outcome, SealedContacts
from services.registration.domain.validation import NormalisedLink
from services.registration.entrypoints.agents import to_link
from services.registration.service_layer.fill_aliases import FillAliases, FillReport
from services.registration.service_layer.link_contract import link_contracts
from tests.registration.events import linked, not_after


def alias_keys(db: Database) -> dict[str, str | None]:
    with db.engine.connect() as conn:
        return dict(conn.execute(select(accounts.c.contract_number, accounts.c.alias_key)).all())


async def test_the_aliases_of_earlier_accounts_are_filled_once_and_standing_pairs_named(
        db: Database, keyring: Keyring, caplog: pytest.LogCaptureFixture) -> None:
    handed: list[Staged] = []
    uow = SqlUnitOfWork(db=db, hand_over=handed.extend)
    protector = KeyringProtector(keyring=keyring)

    async def link(*events: dict[str, Any]) -> dict[Outcome, int]:
        commands = [to_link(ContractLinked.model_validate_json(json.dumps(e))) for e in events]
        return dict(await link_contracts(commands, uow=uow, protector=protector,
                                         not_after=not_after()))

    # three personal accounts, two of which read as mobiles, as linked before revision 0002
    assert await link(
        linked("L-1", product="linear", account="89161110007", mobile="+7 903 222-33-44"),
        linked("L-2", product="satellite", account="9161110008", mobile="+7 903 222-33-45"),
        linked("L-3", product="linear", account="555000111", mobile="+7 903 222-33-46"),
    ) == {Outcome.CREATED: 3}
    with db.engine.begin() as conn:
        conn.execute(update(accounts).values(alias_key=None))
    # the gap: an interactive link takes the mobile that L-1 reads as
    assert await link(linked("I-1", mobile="+7 916 111-00-07", account="555000000001",
                             minutes=1)) == {Outcome.CREATED: 1}

    fill = FillAliases(uow=SqlSupportUnitOfWork(db=db, hand_over=handed.extend), keyring=keyring,
                       chunk=2)  # several chunks
    with caplog.at_level(logging.INFO):
        report = await fill()
    assert report == FillReport(accounts=4, filled=2, unsealed=0, unreadable=0, pairs=1)
    keys = alias_keys(db)
    assert keys["L-1"] is not None and keys["L-2"] is not None
    assert keys["L-3"] is None and keys["I-1"] is None
    with db.engine.connect() as conn:
        ids = dict(conn.execute(select(accounts.c.contract_number, accounts.c.account_id)).all())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [(r.getMessage(), r.__dict__["account_id"], r.__dict__["other_account_id"])
            for r in warnings] == [("two active accounts are reached by one typed login",
                                    str(ids["L-1"]), str(ids["I-1"]))]
    assert "89161110007" not in caplog.text and "9161110007" not in caplog.text

    # after the fill, the mobile that L-2 reads as is refused
    assert await link(linked("I-2", mobile="+7 916 111-00-08", account="555000000002",
                             minutes=2)) == {Outcome.REJECTED: 1}
    # done once: a second start reads nothing and changes nothing
    with db.engine.connect() as conn:
        assert conn.execute(select(backfills.c.name)).scalars().all() == ["accounts.alias_key"]
    with db.engine.begin() as conn:
        conn.execute(update(accounts).where(accounts.c.contract_number == "L-2")
                     .values(alias_key=None))
    assert await fill() is None
    assert alias_keys(db)["L-2"] is None


async def test_a_fill_the_database_interrupts_is_retried_and_an_unsealed_number_is_counted(
        db: Database, keyring: Keyring, caplog: pytest.LogCaptureFixture) -> None:
    handed: list[Staged] = []
    uow = SqlUnitOfWork(db=db, hand_over=handed.extend)
    protector = KeyringProtector(keyring=keyring)
    commands = [to_link(ContractLinked.model_validate_json(json.dumps(e))) for e in (
        linked("L-1", product="linear", account="89161110007", mobile="+7 903 222-33-44"),
        linked("L-4", product="linear", account="89161110009", mobile="+7 903 222-33-47"))]
    await link_contracts(commands, uow=uow, protector=protector, not_after=not_after())
    with db.engine.begin() as conn:  # L-4 linked before the personal account was sealed too
        conn.execute(update(accounts).values(alias_key=None))
        conn.execute(update(accounts).where(accounts.c.contract_number == "L-4")
                     .values(personal_account_enc=None))

    class LosesTheDatabaseOnce(FillAliases):
        calls = 0

        def _one_chunk(self, repo: Any, *, after: Any) -> Any:
            LosesTheDatabaseOnce.calls += 1
            if LosesTheDatabaseOnce.calls == 1:
                from sqlalchemy.exc import OperationalError
                raise OperationalError(None, None, ConnectionError("the database went away"))
            return super()._one_chunk(repo, after=after)

    fill = LosesTheDatabaseOnce(uow=SqlSupportUnitOfWork(db=db, hand_over=handed.extend),
                                keyring=keyring)
    with caplog.at_level(logging.INFO):
        await fill_until_done(fill, retry_s=0.01)
    assert LosesTheDatabaseOnce.calls == 2
    [done] = [r for r in caplog.records if r.getMessage() == "aliases of earlier accounts filled"]
    assert (done.__dict__["filled"], done.__dict__["unsealed"]) == (1, 1)
    keys = alias_keys(db)
    assert keys["L-1"] is not None and keys["L-4"] is None
    assert await fill() is None  # marked done


async def test_an_alias_is_not_written_over_a_row_that_a_link_changed_since_it_was_read(
        db: Database, keyring: Keyring) -> None:
    """The fill reads without locks: a re-link between its read and its write sealed the
    personal account anew (and set its own ``alias_key``, possibly none), so the write skips it."""
    handed: list[Staged] = []
    uow = SqlUnitOfWork(db=db, hand_over=handed.extend)
    commands = [to_link(ContractLinked.model_validate_json(json.dumps(
        linked("L-1", product="linear", account="89161110007", mobile="+7 903 222-33-44"))))]
    await link_contracts(commands, uow=uow, protector=KeyringProtector(keyring=keyring),
                         not_after=not_after())
    with db.engine.begin() as conn:
        conn.execute(update(accounts).values(alias_key=None))
        account_id, sealed = conn.execute(
            select(accounts.c.account_id, accounts.c.personal_account_enc)).one()
    support = SqlSupportUnitOfWork(db=db, hand_over=handed.extend)
    assert await support.run(lambda repo: repo.save_aliases([(account_id, "sealed anew", "k")])) \
        == set()
    assert alias_keys(db)["L-1"] is None
    assert await support.run(lambda repo: repo.save_aliases([(account_id, sealed, "k")])) \
        == {account_id}
    assert alias_keys(db)["L-1"] == "k"


async def test_a_fill_and_links_at_once_each_pair_is_refused_or_named(
        db: Database, database_url: str, keyring: Keyring, caplog: pytest.LogCaptureFixture) -> None:
    """Earlier personal accounts that read as mobiles are filled while another worker links the
    interactive accounts with those mobiles, in small batches: whichever commits first, every
    pair is either refused by the link or named by the fill — none passes unseen, and neither
    side fails (they take the same locks in the same order)."""
    other = Database(url=database_url, name="fill-other")
    try:
        handed: list[Staged] = []
        protector = KeyringProtector(keyring=keyring)
        first = SqlUnitOfWork(db=db, hand_over=handed.extend)
        personal = [linked(f"L-{i}", product="linear", account=f"8916111001{i}",
                           mobile="+7 903 222-33-44") for i in range(8)]
        await link_contracts([to_link(ContractLinked.model_validate_json(json.dumps(e)))
                              for e in personal], uow=first, protector=protector,
                             not_after=not_after())
        with db.engine.begin() as conn:
            conn.execute(update(accounts).values(alias_key=None))
        second = SqlUnitOfWork(db=other, hand_over=handed.extend)

        async def link_mobiles() -> int:
            refused = 0
            for i in range(8):
                event = linked(f"I-{i}", mobile=f"+7916111001{i}", account=f"55500000001{i}",
                               minutes=1)
                outcome = await link_contracts(
                    [to_link(ContractLinked.model_validate_json(json.dumps(event)))],
                    uow=second, protector=protector, not_after=not_after())
                refused += outcome[Outcome.REJECTED]
                await asyncio.sleep(0)
            return refused

        fill = FillAliases(uow=SqlSupportUnitOfWork(db=db, hand_over=handed.extend),
                           keyring=keyring, chunk=1)
        with caplog.at_level(logging.WARNING):
            report, refused = await asyncio.gather(fill(), link_mobiles())
        assert report is not None and report.filled == 8
        assert report.pairs + refused == 8
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == report.pairs
    finally:
        other.close()


class SlowSeal(KeyringProtector):
    """Seals slowly: the batch's transaction stays open after it has read the holders."""

    def __init__(self, *, keyring: Keyring) -> None:
        super().__init__(keyring=keyring)
        self.sealing = threading.Event()  # set once the batch has read the holders

    def seal(self, account_id: uuid.UUID, link: NormalisedLink) -> SealedContacts:
        self.sealing.set()
        time.sleep(0.1)
        return super().seal(account_id, link)


async def test_a_fill_waits_for_a_link_batch_that_judged_the_same_mobiles_and_names_the_pairs(
        db: Database, database_url: str, keyring: Keyring, caplog: pytest.LogCaptureFixture) -> None:
    """A link batch has read the holders of five mobiles (none: the aliases are not filled yet)
    and is still sealing when the fill reaches the personal accounts that read as them. The fill
    must wait for the batch (``hold``) and then see its accounts: five pairs named, where a fill
    that went ahead would commit its aliases unaware, and the pairs would pass unseen."""
    other = Database(url=database_url, name="fill-slow")
    try:
        handed: list[Staged] = []
        first = SqlUnitOfWork(db=db, hand_over=handed.extend)
        personal = [linked(f"L-{i}", product="linear", account=f"8916111002{i}",
                           mobile="+7 903 222-33-44") for i in range(5)]
        await link_contracts([to_link(ContractLinked.model_validate_json(json.dumps(e)))
                              for e in personal], uow=first,
                             protector=KeyringProtector(keyring=keyring), not_after=not_after())
        with db.engine.begin() as conn:
            conn.execute(update(accounts).values(alias_key=None))
        mobiles = [linked(f"I-{i}", mobile=f"+7916111002{i}", account=f"55500000002{i}", minutes=1)
                   for i in range(5)]
        second = SqlUnitOfWork(db=other, hand_over=handed.extend)
        fill = FillAliases(uow=SqlSupportUnitOfWork(db=db, hand_over=handed.extend),
                           keyring=keyring)

        slow = SlowSeal(keyring=keyring)

        async def fill_later() -> None:
            assert await asyncio.to_thread(slow.sealing.wait, 30)
            await fill_until_done(fill, retry_s=0.05)  # SQLite: a snapshot a writer overtook

        with caplog.at_level(logging.WARNING):
            outcome, _ = await asyncio.gather(
                link_contracts([to_link(ContractLinked.model_validate_json(json.dumps(e)))
                                for e in mobiles], uow=second, protector=slow,
                               not_after=not_after()),
                fill_later())
        assert outcome == {Outcome.CREATED: 5}
        named = [r for r in caplog.records if r.levelno == logging.WARNING
                 and r.getMessage() == "two active accounts are reached by one typed login"]
        assert len(named) == 5
    finally:
        other.close()


async def test_two_workers_finishing_the_fill_at_once_both_mark_it_done(
        db: Database, database_url: str) -> None:
    """Two replicas started together both fill, and both mark the fill done: the second mark
    finds the first one's row (uncommitted, then committed) and does nothing, instead of failing
    on the primary key and logging an error at every such start."""
    other = Database(url=database_url, name="fill-mark-other")
    try:
        first = SqlSupportUnitOfWork(db=db, hand_over=lambda staged: None)
        second = SqlSupportUnitOfWork(db=other, hand_over=lambda staged: None)
        marked = threading.Event()

        def mark_and_hold(repo: Any) -> None:
            repo.mark_backfill_done("accounts.alias_key")
            marked.set()
            time.sleep(0.3)  # not committed yet when the second one marks

        async def mark_second() -> None:
            assert await asyncio.to_thread(marked.wait, 30)
            await second.run(lambda repo: repo.mark_backfill_done("accounts.alias_key"))

        await asyncio.gather(first.run(mark_and_hold), mark_second())
        with db.engine.connect() as conn:
            assert conn.execute(select(backfills.c.name)).scalars().all() == ["accounts.alias_key"]
    finally:
        other.close()
