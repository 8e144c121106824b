from __future__ import annotations

import asyncio
import json
import threading
import uuid

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, func, select

from schemas.events import CodeRequested, ContractLinked
from services.common.codec import DecodeError, WireRecord, decode, encode, header, tombstone
from services.common.db import (
    Database,
    claim_events,
    delete_outbox,
    is_postgres,
    is_transient,
    outbox_table,
    pending_outbox,
    processed_events_table,
    stage_outbox,
)

DESIGN_REQUEST = {
    "event_id": "0f5c3c0a-0b8e-4c5f-8a55-5b0c1b1d7a21", "occurred_at": "2026-11-24T09:31:00Z",
    "login": "8 (916) 123-45-67", "channel": "sms", "locale": "ru", "client_ip": "203.0.113.7",
}


def test_encode_writes_cloudevents_headers_and_decode_ignores_them() -> None:
    event = CodeRequested.model_validate_json(json.dumps(DESIGN_REQUEST))
    record = encode(event, key="k", source="/selfcare-access/test")
    assert header(record.headers, "ce_specversion") == "1.0"
    assert header(record.headers, "ce_id") == DESIGN_REQUEST["event_id"]
    assert header(record.headers, "ce_type") == "selfcare.CodeRequested.v1"
    assert header(record.headers, "ce_source") == "/selfcare-access/test"
    assert header(record.headers, "ce_time") == "2026-11-24T09:31:00Z"
    assert header(record.headers, "content-type") == "application/json"
    assert decode(CodeRequested, record.value, max_bytes=10_000) == event


def test_unknown_fields_are_ignored() -> None:
    raw = json.dumps({**DESIGN_REQUEST, "portal_version": "9", "extra": {"a": 1}}).encode()
    assert decode(CodeRequested, raw, max_bytes=10_000).login == "8 (916) 123-45-67"


@pytest.mark.parametrize("value,error_class", [
    (b"\xc3\x28", "invalid_utf8"),
    (b"{", "invalid_json"),
    (b'"string"', "invalid_event"),
    (json.dumps({**DESIGN_REQUEST, "channel": "pigeon"}).encode(), "invalid_event"),
    (json.dumps({**DESIGN_REQUEST, "login": ""}).encode(), "invalid_event"),
    (json.dumps({**DESIGN_REQUEST, "login": "ivanov"}).encode(), "invalid_event"),
    (json.dumps({**DESIGN_REQUEST, "login": "1" * 10_000}).encode(), "oversized_record"),
    (None, "empty_record"),
])
def test_decode_errors_are_classified_and_never_quote_the_input(
    value: bytes | None, error_class: str
) -> None:
    with pytest.raises(DecodeError) as info:
        decode(CodeRequested, value, max_bytes=4096)
    assert info.value.error_class == error_class
    assert "pigeon" not in info.value.reason and "ivanov" not in info.value.reason


def test_decode_reports_field_paths() -> None:
    bad = {"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:30:00Z", "contract_number": "1",
           "personal_account": "1", "tv_product": "cable", "subscriber": {"full_name": "X"}}
    with pytest.raises(DecodeError) as info:
        decode(ContractLinked, json.dumps(bad).encode(), max_bytes=10_000)
    assert "tv_product: enum" in info.value.reason
    assert "subscriber.mobile: missing" in info.value.reason
    assert "cable" not in info.value.reason


async def test_outbox_round_trip(database_url: str) -> None:
    metadata = MetaData()
    things = Table("things", metadata, Column("id", Integer, primary_key=True))
    table = outbox_table(metadata)
    db = Database(url=database_url, name="t")
    try:
        with db.engine.begin() as conn:
            metadata.create_all(conn)
            conn.execute(things.insert().values(id=1))
        record = encode(CodeRequested.model_validate_json(json.dumps(DESIGN_REQUEST)), key="k", source="/t")
        odd = WireRecord(key=None, value=b"\x00\xff", headers=[("x-bin", b"\x00\xff\"\\"), ("x", b"")])
        records = [record, record, tombstone("k2"), odd]
        inserted = await db.run(lambda s: stage_outbox(s, table, "topic.a", records))
        staged = await db.run(lambda s: pending_outbox(s, table))
        assert staged == inserted  # ``stage`` returns the rows as the table holds them
        assert [s.topic for s in staged] == ["topic.a"] * 4
        assert [s.record for s in staged] == records  # tombstones and any header bytes survive
        assert staged[0].id < staged[1].id < staged[2].id < staged[3].id
        await db.run(lambda s: delete_outbox(s, table, [staged[0].id]))
        assert len(await db.run(lambda s: pending_outbox(s, table))) == 3
        assert await db.run(lambda s: s.scalar(select(func.count()).select_from(things))) == 1
        assert await db.ping()
    finally:
        db.close()


async def test_a_failed_transaction_leaves_nothing(database_url: str) -> None:
    metadata = MetaData()
    table = outbox_table(metadata)
    db = Database(url=database_url, name="t")
    metadata.create_all(db.engine)
    record = encode(CodeRequested.model_validate_json(json.dumps(DESIGN_REQUEST)), key=None, source="/t")

    def work(session):  # type: ignore[no-untyped-def]
        stage_outbox(session, table, "x", [record])
        raise RuntimeError("boom")

    handed: list[object] = []
    with pytest.raises(RuntimeError):
        await db.run(work, after_commit=handed.append)
    assert await db.run(lambda s: pending_outbox(s, table)) == []
    assert handed == []  # a rolled-back transaction hands nothing to the relay
    db.close()


async def test_claim_events_takes_each_id_once_even_from_simultaneous_transactions(
        database_url: str) -> None:
    """Two workers handed the same events at once (a rebalance): each id is claimed by exactly
    one transaction. On PostgreSQL the second waits for the first's commit and then finds the
    ids taken, with no error; on SQLite (one writer at a time) it may fail transiently, and the
    runner's retry then finds them taken. A rolled-back claim leaves its ids free."""
    metadata = MetaData()
    table = processed_events_table(metadata)
    first, second = Database(url=database_url, name="a"), Database(url=database_url, name="b")
    claimed, release = threading.Event(), threading.Event()
    try:
        metadata.create_all(first.engine)
        postgres = await first.run(is_postgres)
        assert await first.run(lambda s: claim_events(s, table, ["a", "b", "a"])) == {"a", "b"}
        assert await first.run(lambda s: claim_events(s, table, ["b", "c"])) == {"c"}
        assert await first.run(lambda s: claim_events(s, table, [])) == set()

        def claim_then_fail(session):  # type: ignore[no-untyped-def]
            claim_events(session, table, ["d"])
            raise RuntimeError("the batch failed")
        with pytest.raises(RuntimeError):
            await first.run(claim_then_fail)
        assert await first.run(lambda s: claim_events(s, table, [uuid.UUID(int=1), "d"])) == {
            str(uuid.UUID(int=1)), "d"}

        def hold(session):  # type: ignore[no-untyped-def]
            new = claim_events(session, table, ["x", "y", "z"])
            claimed.set()
            release.wait(10)  # the transaction stays open meanwhile
            return new

        held = asyncio.ensure_future(first.run(hold))
        await asyncio.to_thread(claimed.wait, 10)
        retries = 0

        async def other() -> set[str]:
            nonlocal retries
            while True:
                try:
                    return await second.run(lambda s: claim_events(s, table, ["w", "z", "y"]))
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    retries += 1
                    await asyncio.sleep(0.05)

        racing = asyncio.ensure_future(other())
        await asyncio.sleep(0.3)
        if postgres:
            assert not racing.done()  # waiting for the first transaction's ids
        release.set()
        assert await held == {"x", "y", "z"}
        assert await racing == {"w"}
        if postgres:
            assert retries == 0  # it waited, then skipped them: no failure to retry
        count = await first.run(lambda s: s.scalar(select(func.count()).select_from(table)))
        assert count == len({"a", "b", "c", "d", str(uuid.UUID(int=1)), "x", "y", "z", "w"})
    finally:
        release.set()
        first.close()
        second.close()


class FlakyPublisher:
    """Records what it is asked to send; fails the next ``fail`` calls."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.fail = 0

    async def send_all(self, items: list[tuple[str, object]]) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("broker away")
        self.sent.extend((topic, record.value) for topic, record in items)  # type: ignore[attr-defined]


async def test_relay_publishes_committed_rows_from_memory_and_reads_the_table_when_it_must(
        database_url: str) -> None:
    from services.common.publish import OutboxRelay

    metadata = MetaData()
    table = outbox_table(metadata)
    db = Database(url=database_url, name="t")
    metadata.create_all(db.engine)
    publisher = FlakyPublisher()
    relay = OutboxRelay(db=db, table=table, publisher=publisher)  # type: ignore[arg-type]

    def record(n: int) -> WireRecord:
        return WireRecord(key=None, value=f"r{n}".encode(), headers=[("h", b"\xff")])

    def left_behind(session: object) -> None:  # as a crashed run would leave it, not handed over
        session.execute(table.insert(), [{"topic": "t", "key": None, "value": b"r0", "headers": []}])  # type: ignore[attr-defined]

    try:
        await db.run(left_behind)
        await db.run(lambda s: stage_outbox(s, table, "t", [record(1), record(2)]),
                     after_commit=relay.committed)
        assert await relay.flush() == 3  # first flush: the table, the handed-over rows not twice
        assert [v for _, v in publisher.sent] == [b"r0", b"r1", b"r2"]
        await db.run(lambda s: stage_outbox(s, table, "t", [record(3)]), after_commit=relay.committed)
        await db.run(left_behind)  # not handed over: not read back while publishing succeeds
        assert await relay.flush() == 1
        assert [v for _, v in publisher.sent][3:] == [b"r3"]
        assert await relay.flush() == 0
        await db.run(lambda s: stage_outbox(s, table, "t", [record(4)]), after_commit=relay.committed)
        publisher.fail = 1
        with pytest.raises(ConnectionError):
            await relay.flush()
        assert await relay.flush() == 2  # after a failure: the table again, r0 and r4
        assert sorted(v for _, v in publisher.sent[4:]) == [b"r0", b"r4"]
        assert await db.run(lambda s: pending_outbox(s, table)) == []
    finally:
        db.close()
