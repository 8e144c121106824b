"""The statements built once (``services.common.db.any_of`` / ``chunks``) on SQLite and
PostgreSQL: a list longer than SQLite's chunk goes in several statements and every member
counts; the same statement serves calls with lists of any length."""

from __future__ import annotations

import uuid

from sqlalchemy import MetaData

from services.common.codec import WireRecord
from services.common.db import (
    _CHUNK,
    Database,
    already_processed,
    chunks,
    delete_outbox,
    is_postgres,
    mark_processed,
    outbox_table,
    pending_outbox,
    processed_events_table,
    stage_outbox,
)
from services.common.logins import LoginKind
from services.common.migrations import migrate
from services.recovery.adapters.repository import SqlAccounts, accounts_by_keys, insert_accounts
from services.recovery.adapters.tables import MIGRATIONS
from services.recovery.entrypoints.agents import project_account
from tests.recovery.conftest import account_changed, make_keyring


def test_chunks_split_only_where_sqlite_needs_it(database_url: str) -> None:
    db = Database(url=database_url, name="t")
    try:
        values = list(range(2 * _CHUNK + 7))
        parts = db.run_sync(lambda s: list(chunks(s, values)))
        postgres = db.run_sync(is_postgres)
        assert [len(p) for p in parts] == ([len(values)] if postgres else [_CHUNK, _CHUNK, 7])
        assert [v for p in parts for v in p] == values
        assert db.run_sync(lambda s: list(chunks(s, []))) == []
    finally:
        db.close()


async def test_processed_ids_and_outbox_deletes_over_many_chunks(database_url: str) -> None:
    metadata = MetaData()
    processed, outbox = processed_events_table(metadata), outbox_table(metadata)
    db = Database(url=database_url, name="t")
    try:
        with db.engine.begin() as conn:
            metadata.create_all(conn)
        known = [str(uuid.uuid4()) for _ in range(2 * _CHUNK + 3)]
        unknown = [str(uuid.uuid4()) for _ in range(_CHUNK + 1)]
        await db.run(lambda s: mark_processed(s, processed, known))
        asked = unknown[:10] + known + unknown[10:]
        assert await db.run(lambda s: already_processed(s, processed, asked)) == set(known)
        assert await db.run(lambda s: already_processed(s, processed, unknown[:1])) == set()
        assert await db.run(lambda s: already_processed(s, processed, known[-1:])) == {known[-1]}

        records = [WireRecord(key=f"k{i}".encode(), value=b"v", headers=[])
                   for i in range(_CHUNK + 20)]
        staged = await db.run(lambda s: stage_outbox(s, outbox, "topic.a", records))
        gone = [row.id for row in staged[5:]]  # more than one chunk, not every row
        await db.run(lambda s: delete_outbox(s, outbox, gone))
        left = await db.run(lambda s: pending_outbox(s, outbox))
        assert [row.id for row in left] == [row.id for row in staged[:5]]
    finally:
        db.close()


def test_accounts_by_either_kind_of_key_and_locked_versions(database_url: str) -> None:
    keyring = make_keyring()
    db = Database(url=database_url, name="t")
    try:
        migrate(db.engine, MIGRATIONS)
        changes = [project_account(account_changed(keyring, version=i + 1)) for i in range(3)]
        db.run_sync(lambda s: insert_accounts(s, changes, 1.0))
        mobile = {LoginKind.MOBILE: changes[0].login_key_mobile}
        number = {LoginKind.PERSONAL_ACCOUNT: changes[1].login_key_personal_account}

        def ids(keys: list[dict[LoginKind, str]]) -> set[str]:
            return {a.account_id for a in db.run_sync(lambda s: accounts_by_keys(s, keys))}

        assert ids([mobile]) == {changes[0].account_id}
        assert ids([number]) == {changes[1].account_id}
        assert ids([mobile, number]) == {changes[0].account_id, changes[1].account_id}
        assert ids([{LoginKind.MOBILE: "no such key"}]) == set()
        assert ids([]) == set()
        wanted = {c.account_id for c in changes[1:]} | {str(uuid.uuid4())}
        versions = db.run_sync(lambda s: SqlAccounts(s).lock_versions(wanted))
        assert versions == {c.account_id: c.version for c in changes[1:]}
    finally:
        db.close()
