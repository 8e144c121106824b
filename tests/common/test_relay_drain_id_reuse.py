"""The relay's table read (at the start, after a failed publish) forgets the rows handed over while
it read that it has published itself. On SQLite a row's id is given again once the table is empty:
a new row committed right after the read's last (empty) select, and handed over before the read
resumes, has the id of a row just published. Forgotten by id alone, it went out only at a later
sweep, after newer records of its key: out of order on a compacted topic."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import MetaData, Table
from sqlalchemy.orm import Session

from services.common import publish
from services.common.codec import WireRecord
from services.common.db import Database, Staged, outbox_table, pending_outbox, stage_outbox
from services.common.publish import OutboxRelay


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    async def send_all(self, items: Sequence[tuple[str, WireRecord]]) -> None:
        self.sent.extend((t, r.key, r.value) for t, r in items)


def rec(key: str, value: str) -> WireRecord:
    return WireRecord(key=key.encode(), value=value.encode(), headers=[])


async def test_a_row_committed_during_the_table_read_with_a_reused_id_is_published_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    metadata = MetaData()
    table = outbox_table(metadata)
    db = Database(url=f"sqlite:///{tmp_path / 't.db'}", name="t")
    metadata.create_all(db.engine)
    pub = FakePublisher()
    relay = OutboxRelay(db=db, table=table, publisher=pub)  # type: ignore[arg-type]
    # left by an earlier run: id 1
    await db.run(lambda s: stage_outbox(s, table, "status", [rec("code-1", "sent v1")]))
    injected: list[list[Staged]] = []

    def pending_then_a_commit(session: Session, t: Table, limit: int = 5000) -> list[Staged]:
        rows = pending_outbox(session, t, limit)
        if not rows and not injected:
            # the next transaction on the database thread commits and hands over its row before
            # the read resumes on the event loop (``after_commit`` runs in that thread)
            with Session(db.engine) as other, other.begin():
                staged = stage_outbox(other, table, "status", [rec("code-2", "sent v2")])
            injected.append(staged)
            relay.committed(staged)
        return rows

    monkeypatch.setattr(publish, "pending_outbox", pending_then_a_commit)
    assert await relay.flush() == 1  # the leftover
    monkeypatch.setattr(publish, "pending_outbox", pending_outbox)
    assert injected[0][0].id == 1  # the id reused: the case at hand
    # a later transaction of the same key, handed over as usual
    await db.run(lambda s: stage_outbox(s, table, "status", [rec("code-2", "delivered v3")]),
                 after_commit=relay.committed)
    assert await relay.flush() == 2
    await relay.sweep()
    await relay.sweep()
    left = await db.run(lambda s: pending_outbox(s, table))
    db.close()
    assert [v for _, k, v in pub.sent if k == b"code-2"] == [b"sent v2", b"delivered v3"]
    assert left == []
