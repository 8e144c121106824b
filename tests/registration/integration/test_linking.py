"""The linking process on a real database (SQLite and PostgreSQL): the same accounts and outbox
rows as linking in the worker's own thread, its rows handed to the worker's relay, and its
failures told apart (database away: retried; anything else: the batch is redone one by one)."""

from __future__ import annotations

import asyncio
import fcntl
import json
import multiprocessing
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from schemas.events import AccountChanged, ContractLinked, ContractRejected
from schemas.topics import ACCOUNT_CHANGED, CONTRACT_REJECTED
from services.common.crypto import Keyring
from services.common.db import Database, Staged, is_transient
from services.common.migrations import migrate
from services.common.process import PIPE_BYTES
from services.registration.adapters.linking import InProcessLinker, LinkFailed, ProcessLinker
from services.registration.adapters.tables import MIGRATIONS, accounts, outbox
from services.registration.domain.model import Outcome
from services.registration.entrypoints.agents import to_link
from tests.registration.events import linked, not_after

BATCH = [
    linked("L-1", minutes=2),
    linked("L-1", minutes=5, email=None),  # the same contract again, newer: one account, version 2
    linked("L-2", minutes=1, mobile="+7 903 555-66-77", account="222222222222", product="linear"),
    linked("L-3", minutes=3, mobile="+44 20 7946 0958"),  # invalid_mobile
    linked("L-4", minutes=4, account="123456789012"),  # login of L-1's active account: conflict
]


def commands(*events: dict[str, Any]) -> list[Any]:
    return [to_link(ContractLinked.model_validate_json(json.dumps(e))) for e in events]


@pytest.fixture
def handed() -> list[Staged]:
    """The outbox rows the linker hands over, as the worker's relay is handed them."""
    return []


@pytest.fixture
async def linker(db: Database, keyring: Keyring, handed: list[Staged]) -> AsyncIterator[ProcessLinker]:
    process = ProcessLinker(db=db, keyring=keyring, hand_over=handed.extend)
    await process.warm_up()
    yield process
    process.close()


def table_rows(db: Database) -> tuple[dict[str, Any], list[Any]]:
    with db.engine.connect() as conn:
        found = {r.contract_number: r for r in conn.execute(select(accounts))}
        staged = list(conn.execute(select(outbox).order_by(outbox.c.id)))
    return found, staged


async def test_the_process_links_what_the_worker_thread_links(
    linker: ProcessLinker, db: Database, keyring: Keyring, tmp_path: Path
) -> None:
    outcomes = await linker.link(commands(*BATCH), not_after())
    assert dict(outcomes) == {Outcome.CREATED: 2, Outcome.UPDATED: 1, Outcome.REJECTED: 2}

    # the same batch through the worker's own thread, on a database of its own
    here = Database(url=f"sqlite:///{tmp_path / 'here.db'}", name="here")
    migrate(here.engine, MIGRATIONS)
    try:
        mine_handed: list[Staged] = []
        in_process = InProcessLinker(db=here, keyring=keyring, hand_over=mine_handed.extend)
        assert await in_process.link(commands(*BATCH), not_after()) == outcomes
        assert [s.topic for s in mine_handed] == [r.topic for r in table_rows(here)[1]]
        theirs, mine = table_rows(db)[0], table_rows(here)[0]
        assert sorted(theirs) == sorted(mine) == ["L-1", "L-2"]
        for number in theirs:
            a, b = theirs[number], mine[number]
            assert (a.version, a.status, a.login_key, a.mobile_key, a.fingerprint, a.email_enc is None) == (
                b.version, b.status, b.login_key, b.mobile_key, b.fingerprint, b.email_enc is None)
    finally:
        here.close()


async def test_committed_rows_are_handed_to_the_workers_relay(
        linker: ProcessLinker, db: Database, handed: list[Staged]) -> None:
    await linker.link(commands(*BATCH), not_after())
    _, staged = table_rows(db)
    assert [s.id for s in handed] == [r.id for r in staged]  # what the table holds, in order
    assert [(s.topic, s.record.value) for s in handed] == [(r.topic, r.value) for r in staged]
    changed = [AccountChanged.model_validate_json(s.record.value) for s in handed if s.topic == ACCOUNT_CHANGED]
    assert sorted((e.contract_number, e.version) for e in changed) == [("L-1", 2), ("L-2", 1)]
    rejected = [ContractRejected.model_validate_json(s.record.value) for s in handed
                if s.topic == CONTRACT_REJECTED]
    assert sorted(r.reason.value for r in rejected) == ["invalid_mobile", "login_conflict"]
    assert all(dict(s.record.headers)["ce_id"] for s in handed)

    # a redelivered batch changes nothing and hands nothing over
    handed.clear()
    assert dict(await linker.link(commands(*BATCH), not_after())) == {Outcome.DUPLICATE: 5}
    assert handed == []


async def test_a_database_that_is_away_is_a_transient_error(keyring: Keyring, tmp_path: Path) -> None:
    unreachable = Database(url="postgresql+psycopg://selfcare@127.0.0.1:9/none", name="away")
    handed: list[Staged] = []
    linker = ProcessLinker(db=unreachable, keyring=keyring, hand_over=handed.extend)
    try:
        with pytest.raises(Exception) as caught:
            await linker.link(commands(linked("A-1")), not_after())
        assert is_transient(caught.value)  # BatchRunner retries it with backoff
        assert handed == []
    finally:
        linker.close()
        unreachable.close()


async def test_another_failure_fails_the_batch(
        linker: ProcessLinker, db: Database, handed: list[Staged]) -> None:
    with db.engine.begin() as conn:  # the outbox is gone: every batch fails the same way
        conn.execute(text("DROP TABLE outbox"))
    with pytest.raises(Exception) as caught:
        await linker.link(commands(linked("F-1")), not_after())
    if db.engine.dialect.name == "postgresql":  # UndefinedTable: redo the batch one by one
        assert isinstance(caught.value, LinkFailed)
        assert str(caught.value) == "linking process: ProgrammingError"
    else:  # SQLite says OperationalError for a missing table as for a locked file: retried
        assert is_transient(caught.value)
    assert table_rows_count(db) == 0  # rolled back
    assert handed == []  # nothing handed over


def pipe_sizes(pool: Any) -> list[int]:
    return [fcntl.fcntl(q._reader.fileno(), fcntl.F_GETPIPE_SZ)
            for q in (pool._call_queue, pool._result_queue)]


def table_rows_count(db: Database) -> int:
    with db.engine.connect() as conn:
        return len(list(conn.execute(select(accounts.c.account_id))))


async def test_a_linking_process_that_died_is_started_again_once(
        db: Database, keyring: Keyring, handed: list[Staged]) -> None:
    linker = ProcessLinker(db=db, keyring=keyring, hand_over=handed.extend)
    await linker.warm_up()
    try:
        pool = linker._executor()
        assert pipe_sizes(pool) == [PIPE_BYTES, PIPE_BYTES]  # a batch's answer crosses at once
        (pid,) = list(pool._processes)  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)
        # two calls in flight when it died (the runner overlaps batches): both are redone, by
        # one new process
        results = await asyncio.gather(
            linker.link(commands(linked("K-1")), not_after()),
            linker.link(commands(linked("K-2", account="222222222222", mobile="+7 903 555-66-22")),
                        not_after()))
        assert sum(results, Counter()) == Counter({Outcome.CREATED: 2})
        assert sorted(table_rows(db)[0]) == ["K-1", "K-2"]
        assert linker._pool is not pool
        assert pipe_sizes(linker._pool) == [PIPE_BYTES, PIPE_BYTES]  # the new one's too
        assert [p.pid for p in multiprocessing.active_children()] == list(
            linker._executor()._processes)  # type: ignore[arg-type]  # no other pool left running
    finally:
        linker.close()
