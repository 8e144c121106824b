"""The hand-over of committed outbox rows to the relay: ``Database`` calls ``after_commit`` in its
thread right after each commit, so the relay gets the rows in commit order, whatever order the
transactions are awaited in; a transaction whose commit fails hands over nothing. A fake
publisher stands in for the broker; the database is real (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.common.codec import WireRecord
from services.common.db import Database, Staged, outbox_table, pending_outbox, stage_outbox
from services.common.publish import OutboxRelay


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []

    async def send_all(self, items: Sequence[tuple[str, WireRecord]]) -> None:
        self.sent.extend((topic, record.value) for topic, record in items)


@dataclass
class Setup:
    db: Database
    relay: OutboxRelay
    publisher: FakePublisher
    table: Table
    children: Table


@pytest.fixture
async def setup(database_url: str) -> AsyncIterator[Setup]:
    metadata = MetaData()
    table = outbox_table(metadata)
    parents = Table("parents", metadata, Column("id", Integer, primary_key=True))
    # checked at COMMIT, not at the insert: a transaction whose commit itself fails
    children = Table("children", metadata, Column("id", Integer, primary_key=True),
                     Column("parent_id", Integer, ForeignKey(parents.c.id, deferrable=True,
                                                             initially="DEFERRED")))
    db = Database(url=database_url, name="relay")
    metadata.create_all(db.engine)
    publisher = FakePublisher()
    relay = OutboxRelay(db=db, table=table, publisher=publisher)  # type: ignore[arg-type]
    assert await relay.flush() == 0  # the first flush reads the (empty) table; then from memory
    try:
        yield Setup(db, relay, publisher, table, children)
    finally:
        db.close()


def record(n: int) -> WireRecord:
    return WireRecord(key=str(n).encode(), value=f"r{n}".encode(), headers=[("h", b"\x00")])


def staging(table: Table, topic: str, *numbers: int) -> object:
    def work(session: Session) -> list[Staged]:
        return stage_outbox(session, table, topic, [record(n) for n in numbers])
    return work


async def test_rows_are_handed_over_in_commit_order_and_published_in_it(setup: Setup) -> None:
    db, relay = setup.db, setup.relay
    # submitted ahead, awaited in the reverse order: the hand-over follows the commits
    futures = [db.submit(staging(setup.table, topic, *numbers),  # type: ignore[arg-type]
                         after_commit=relay.committed)
               for topic, numbers in [("a", (1, 2)), ("b", (3,)), ("a", (4, 5, 6))]]
    for future in reversed(futures):
        await future
    assert await relay.flush() == 6
    assert setup.publisher.sent == [("a", b"r1"), ("a", b"r2"), ("b", b"r3"), ("a", b"r4"),
                                    ("a", b"r5"), ("a", b"r6")]
    # published: deleted (the deletes are queued on the database thread ahead of this read)
    assert await db.run(lambda s: pending_outbox(s, setup.table)) == []
    assert await relay.flush() == 0  # nothing twice


async def test_a_transaction_whose_commit_fails_hands_over_nothing(setup: Setup) -> None:
    db, relay = setup.db, setup.relay
    handed: list[list[Staged]] = []

    def orphan(session: Session) -> list[Staged]:
        rows = stage_outbox(session, setup.table, "a", [record(1)])
        session.execute(setup.children.insert().values(id=1, parent_id=999))
        return rows

    def hand_over(rows: list[Staged]) -> None:
        handed.append(rows)
        relay.committed(rows)

    with pytest.raises(IntegrityError):
        await db.run(orphan, after_commit=hand_over)
    def failing(session: Session) -> list[Staged]:
        stage_outbox(session, setup.table, "a", [record(2)])
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):  # and one that fails before it commits
        await db.run(failing, after_commit=hand_over)
    assert handed == []
    await db.run(staging(setup.table, "a", 3), after_commit=hand_over)  # type: ignore[arg-type]
    assert [[r.record.value for r in rows] for rows in handed] == [[b"r3"]]
    assert await relay.flush() == 1
    assert setup.publisher.sent == [("a", b"r3")]
    assert await db.run(lambda s: pending_outbox(s, setup.table)) == []


async def test_rows_a_killed_worker_committed_are_published_by_a_live_one_at_its_second_sweep(
    setup: Setup,
) -> None:
    db, live = setup.db, setup.relay
    # the other worker on the same database commits and dies before its publish: its rows are in
    # the table, handed over to a relay that never flushes
    dead = OutboxRelay(db=db, table=setup.table, publisher=FakePublisher())  # type: ignore[arg-type]
    await db.run(staging(setup.table, "a", 1, 2), after_commit=dead.committed)  # type: ignore[arg-type]
    # the live worker's own rows, committed and not yet flushed, are not the sweep's
    await db.run(staging(setup.table, "b", 3), after_commit=live.committed)  # type: ignore[arg-type]
    assert await live.sweep() == 0  # first sight: the writer may be about to publish
    assert setup.publisher.sent == []
    assert await live.sweep() == 2  # still there a period later: published here
    assert setup.publisher.sent == [("a", b"r1"), ("a", b"r2")]
    assert await live.flush() == 1  # its own, once
    assert setup.publisher.sent[-1] == ("b", b"r3")
    assert await db.run(lambda s: pending_outbox(s, setup.table)) == []
    assert await live.sweep() == 0 and await live.flush() == 0  # nothing twice


async def test_a_row_handed_over_late_is_published_once_by_its_own_worker(setup: Setup) -> None:
    db, relay = setup.db, setup.relay
    # committed elsewhere (the registration linking process) and handed over after a sweep saw it
    rows = await db.run(staging(setup.table, "a", 1))  # type: ignore[arg-type]
    assert await relay.sweep() == 0
    relay.committed(rows)  # type: ignore[arg-type]
    assert await relay.sweep() == 0  # its own now: not the sweep's
    assert await relay.flush() == 1
    assert setup.publisher.sent == [("a", b"r1")]


async def test_a_row_published_by_its_writer_between_two_sweeps_is_not_swept(setup: Setup) -> None:
    db, live = setup.db, setup.relay
    other_publisher = FakePublisher()
    other = OutboxRelay(db=db, table=setup.table, publisher=other_publisher)  # type: ignore[arg-type]
    assert await other.flush() == 0
    await db.run(staging(setup.table, "a", 1), after_commit=other.committed)  # type: ignore[arg-type]
    assert await live.sweep() == 0
    assert await other.flush() == 1  # the writer was only slow
    await db.run(staging(setup.table, "a", 2), after_commit=other.committed)  # type: ignore[arg-type]
    assert await live.sweep() == 0  # row 2 is new, row 1 gone
    assert setup.publisher.sent == []
    assert other_publisher.sent == [("a", b"r1")]


async def test_the_sweep_runs_on_its_own_and_survives_a_failed_round(setup: Setup) -> None:
    db = setup.db

    class FlakyPublisher(FakePublisher):
        fail = True

        async def send_all(self, items: Sequence[tuple[str, WireRecord]]) -> None:
            if self.fail:
                self.fail = False
                raise ConnectionError("broker away")
            await super().send_all(items)

    publisher = FlakyPublisher()
    relay = OutboxRelay(db=db, table=setup.table, publisher=publisher)  # type: ignore[arg-type]
    # a leftover of nobody alive, first seen by a relay that has read the table once
    publisher.fail = False
    assert await relay.flush() == 0
    publisher.fail = True
    await db.run(staging(setup.table, "a", 1))  # type: ignore[arg-type]
    task = asyncio.ensure_future(relay.sweep_forever(0.05))
    try:
        deadline = time.monotonic() + 30
        while publisher.fail and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not publisher.fail  # the second sweep's publish failed
        # more rounds: the loop goes on, reads the table and publishes the row
        while not publisher.sent and not task.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not task.done()
    finally:
        task.cancel()
    assert publisher.sent == [("a", b"r1")]  # published by a later round, not left to a flush
    assert await relay.flush() == 0


async def test_after_a_failed_publish_the_sweep_publishes_what_waits_without_a_flush(
        setup: Setup) -> None:
    """A flush fails (the broker away): its rows stay in the table. On a worker where no
    further flush comes (an idle one; a login's notice flushed in the background), the next
    sweep must publish them, not wait for a flush."""
    db, relay = setup.db, setup.relay
    await db.run(staging(setup.table, "a", 1, 2), after_commit=relay.committed)  # type: ignore[arg-type]
    sent = setup.publisher.send_all

    async def broker_away(_items: Sequence[tuple[str, WireRecord]]) -> None:
        raise ConnectionError("broker away")

    setup.publisher.send_all = broker_away  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await relay.flush()
    setup.publisher.send_all = sent  # type: ignore[method-assign]
    assert await relay.sweep() == 2
    assert setup.publisher.sent == [("a", b"r1"), ("a", b"r2")]
    assert await db.run(lambda s: pending_outbox(s, setup.table)) == []
    assert await relay.flush() == 0 and await relay.sweep() == 0  # nothing twice


async def test_a_tombstone_takes_the_rows_of_its_key_still_in_the_table_with_it(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record is published and its delete is lost (the database away for a moment), so its row
    stays; then its key is erased. The row must not go out again after the tombstone (at a sweep
    or a read of the table): compaction would keep it as the key's last record. The rows of other
    keys, and of the same key on another topic, are left to the relay."""
    db, relay = setup.db, setup.relay
    await db.run(staging(setup.table, "a", 1, 2), after_commit=relay.committed)  # type: ignore[arg-type]
    monkeypatch.setattr("services.common.publish.delete_outbox", lambda *_: None)  # lost
    assert await relay.flush() == 2
    await db.run(lambda s: None)  # the queued deletes have run (and done nothing)
    monkeypatch.undo()
    # someone else's row of the same key on another topic, committed and never published
    await db.run(staging(setup.table, "b", 1))  # type: ignore[arg-type]

    def erase(session: Session) -> list[Staged]:
        return stage_outbox(session, setup.table, "a", [WireRecord(key=b"1", value=None,
                                                                   headers=[])])

    await db.run(erase, after_commit=relay.committed)  # type: ignore[arg-type]
    assert await relay.flush() == 1
    assert await relay.sweep() == 0
    assert await relay.sweep() == 2  # the lost delete's row of key 2, and topic b's row
    assert setup.publisher.sent == [("a", b"r1"), ("a", b"r2"), ("a", None), ("a", b"r2"),
                                    ("b", b"r1")]
    assert await db.run(lambda s: pending_outbox(s, setup.table)) == []
