"""A prune pass whose tombstones were committed and handed to the relay, then a later batch of the
same pass failed (the database away a moment): the pass ended before its flush. The tombstones
sat in the relay's memory, which its sweep never publishes, and the next pass staged nothing, so
did not flush either: on a worker with no consumer traffic they were never published."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Float, MetaData, String, Table, text
from sqlalchemy.exc import OperationalError

from services.common.codec import WireRecord
from services.common.db import Database, outbox_table
from services.common.metrics import ServiceMetrics
from services.common.publish import OutboxRelay
from services.common.retention import Prunable, Pruner, pruned_counter


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.away = False

    async def send_all(self, items: Sequence[tuple[str, WireRecord]]) -> None:
        if self.away:
            raise ConnectionError("broker away")
        self.sent.extend((t, r.key, r.value) for t, r in items)


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        md = MetaData()
        self.outbox = outbox_table(md)
        self.deliveries = Table("deliveries", md, Column("code_id", String(36), primary_key=True),
                                Column("done_at", Float, nullable=False))
        other = Table("other", md, Column("id", String(36), primary_key=True), Column("at", Float))
        self.db = Database(url=f"sqlite:///{tmp_path / 't.db'}", name="t")
        md.create_all(self.db.engine)
        self.publisher = FakePublisher()
        self.relay = OutboxRelay(db=self.db, table=self.outbox, publisher=self.publisher)  # type: ignore[arg-type]
        self.database_away = True

        def other_old(now: float, keep: float) -> Any:
            if self.database_away:
                raise OperationalError("SELECT", {}, ConnectionError("database away"))
            return other.c.at < now - keep

        deliveries = self.deliveries
        self.pruner = Pruner(db=self.db, tables=[
            Prunable(deliveries, lambda now, keep: deliveries.c.done_at < now - keep,
                     tombstones=("notification.status", self.outbox)),
            Prunable(other, other_old)], retention_days=1, pruned=pruned_counter(ServiceMetrics("t")),
            hand_over=self.relay.committed, flush=self.relay.flush)

    async def outbox_rows(self) -> list[tuple[str, bytes]]:
        return [tuple(r) for r in await self.db.run(  # type: ignore[misc]
            lambda s: s.execute(text("SELECT topic, key FROM outbox")).all())]


@pytest.fixture
async def setup(tmp_path: Path) -> Any:
    s = Setup(tmp_path)
    await s.db.run(lambda session: session.execute(s.deliveries.insert(),
                                                   [{"code_id": "c1", "done_at": 0.0}]))
    assert await s.relay.flush() == 0  # the first flush reads the (empty) table; then from memory
    try:
        yield s
    finally:
        s.db.close()


async def test_the_tombstones_of_a_pass_that_fails_later_are_published(setup: Setup) -> None:
    with pytest.raises(OperationalError):  # the batch's own error, as run_forever logs it
        await setup.pruner.prune(10 * 86400.0)
    assert setup.publisher.sent == [("notification.status", b"c1", None)]
    assert await setup.outbox_rows() == []
    # and nothing goes out twice afterwards
    setup.database_away = False
    await setup.relay.sweep()
    await setup.relay.sweep()
    await setup.pruner.prune(10 * 86400.0 + 3600)
    assert setup.publisher.sent == [("notification.status", b"c1", None)]


async def test_a_failed_flush_after_a_failed_batch_leaves_the_batchs_error_and_the_sweep_publishes(
        setup: Setup) -> None:
    setup.publisher.away = True
    with pytest.raises(OperationalError):  # not the broker's ConnectionError
        await setup.pruner.prune(10 * 86400.0)
    assert setup.publisher.sent == []
    setup.publisher.away = False
    await setup.relay.sweep()  # the relay reads its table after a failed publish
    assert setup.publisher.sent == [("notification.status", b"c1", None)]
    assert await setup.outbox_rows() == []
