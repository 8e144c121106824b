"""Shared pieces of the subscriber lifecycle: the event-time check and tombstones in the
``BatchRunner``, nullable outbox values and additive migrations on an existing database."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, create_engine, inspect, text

from schemas.events import CodeRequested, Event
from services.common.codec import header, not_in_future
from services.common.consumer_loop import BatchRunner, Inbound, RawRecord, TombstoneHandler, tombstones_as
from services.common.db import allow_tombstones, outbox_table
from services.common.metrics import ServiceMetrics
from services.common.migrations import add_missing_columns
from tests.common.test_consumer_loop import Relay, Sent


def request(occurred_at: str, offset: int) -> RawRecord:
    value = json.dumps({"event_id": str(uuid.uuid4()), "occurred_at": occurred_at,
                        "login": "+79161234501", "channel": "sms"}).encode()
    return RawRecord(topic="in", partition=0, offset=offset, key=None, value=value, headers=[])


async def test_a_request_dated_beyond_the_skew_is_dead_lettered_as_invalid_event_time() -> None:
    handled: list[str] = []

    async def handler(items: list[Inbound[CodeRequested]]) -> None:
        handled.extend(i.event.occurred_at.isoformat() for i in items)

    sent = Sent()
    runner = BatchRunner(
        service="t", topic="in", model=CodeRequested, handler=handler, publisher=sent,  # type: ignore[arg-type]
        relay=Relay(), metrics=ServiceMetrics("t"), max_record_bytes=10_000,  # type: ignore[arg-type]
        check=not_in_future(300, time.time),
    )
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 200))
    await runner.process([request("9999-12-31T23:59:59Z", 0), request(soon, 1),
                          request("2026-11-24T09:31:00Z", 2)])
    assert len(handled) == 2
    [(topic, dead)] = sent.records
    assert topic == "in.dlq"
    assert header(dead.headers, "dlq_error_class") == "invalid_event_time"
    assert header(dead.headers, "dlq_original_offset") == "0"


async def test_tombstones_go_to_their_handler_after_the_events_and_never_to_the_dlq() -> None:
    order: list[str] = []

    async def handler(items: list[Inbound[CodeRequested]]) -> None:
        order.append(f"events:{len(items)}")

    async def tombstones(records: list[RawRecord]) -> None:
        order.append("tombstones:" + ",".join(r.key.decode() for r in records if r.key))

    sent = Sent()
    tomb = RawRecord(topic="in", partition=0, offset=1, key=b"acc-1", value=None, headers=[])
    common = {"service": "t", "topic": "in", "model": CodeRequested, "publisher": sent,
              "relay": Relay(), "metrics": ServiceMetrics("t"), "max_record_bytes": 10_000}
    await BatchRunner(handler=handler, tombstones=tombstones, **common).process(  # type: ignore[arg-type]
        [request("2026-11-24T09:31:00Z", 0), tomb])
    assert order == ["events:1", "tombstones:acc-1"] and sent.records == []
    # without a tombstone handler a null value is still a malformed record
    await BatchRunner(handler=handler, **common).process([tomb])  # type: ignore[arg-type]
    [(_, dead)] = sent.records
    assert header(dead.headers, "dlq_error_class") == "empty_record"

    async def failing(records: list[RawRecord]) -> None:
        raise ValueError("cannot delete")

    # a handler that fails for good dead-letters the tombstones instead of stopping the agent
    await BatchRunner(handler=handler, tombstones=failing, **common).process([tomb])  # type: ignore[arg-type]
    assert header(sent.records[-1][1].headers, "dlq_error_class") == "processing_error"


def tombstones_only(handle: TombstoneHandler, sent: Sent, metrics: ServiceMetrics) -> BatchRunner[Event]:
    return BatchRunner(service="t", topic="accounts", model=None, handler=None, tombstones=handle,
                       publisher=sent, relay=Relay(), metrics=metrics,  # type: ignore[arg-type]
                       max_record_bytes=10)


def on_accounts(*records: tuple[bytes | None, bytes | None]) -> list[RawRecord]:
    return [RawRecord(topic="accounts", partition=0, offset=i, key=key, value=value, headers=[])
            for i, (key, value) in enumerate(records)]


async def test_a_runner_of_tombstones_only_hands_their_keys_over_and_never_reads_a_value() -> None:
    erased: list[list[str]] = []

    async def erase(keys: list[str]) -> None:
        erased.append(keys)

    sent, metrics = Sent(), ServiceMetrics("t")
    runner = tombstones_only(tombstones_as(list, erase), sent, metrics)
    await runner.process(on_accounts(
        (b"acc-2", b"\xff not JSON and over max_record_bytes"), (b"acc-2", None), (None, None),
        (b"acc-1", None), (b"acc-2", None)))
    assert erased == [["acc-1", "acc-2"]]  # distinct keys, sorted; the keyless one names nothing
    assert sent.records == []  # the value is neither decoded nor dead-lettered
    assert metrics.events_consumed.labels("accounts", "processed")._value.get() == 4
    assert metrics.events_consumed.labels("accounts", "ignored")._value.get() == 1
    await runner.process(on_accounts((b"acc-3", b"{}")))
    assert erased == [["acc-1", "acc-2"]]  # values only: no call
    assert metrics.events_consumed.labels("accounts", "processed")._value.get() == 4
    assert metrics.events_consumed.labels("accounts", "ignored")._value.get() == 2


async def test_a_tombstone_that_fails_on_its_own_is_dead_lettered_alone() -> None:
    calls: list[list[str]] = []

    async def erase(keys: list[str]) -> None:
        calls.append(keys)
        if "poison" in keys:
            raise ValueError("cannot delete")

    sent = Sent()
    await tombstones_only(tombstones_as(list, erase), sent, ServiceMetrics("t")).process(
        on_accounts((b"acc-1", None), (b"poison", None), (b"acc-2", None)))
    # the batch, then each tombstone alone: the other two erasures are done
    assert calls == [["acc-1", "acc-2", "poison"], ["acc-1"], ["poison"], ["acc-2"]]
    [(topic, dead)] = sent.records
    assert topic == "accounts.dlq" and dead.key == b"poison" and dead.value is None
    assert header(dead.headers, "dlq_error_class") == "processing_error"
    assert header(dead.headers, "dlq_original_offset") == "1"


def test_a_runner_takes_a_model_with_its_handler_or_tombstones_only() -> None:
    async def handler(items: list[Inbound[CodeRequested]]) -> None:
        return None

    common: dict[str, Any] = {"service": "t", "topic": "in", "publisher": Sent(), "relay": Relay(),
                              "metrics": ServiceMetrics("t"), "max_record_bytes": 10_000}
    for model, handle, tombstones in [(CodeRequested, None, None), (None, handler, None),
                                      (None, None, None)]:
        with pytest.raises(ValueError, match="a model and its handler, or tombstones only"):
            BatchRunner(model=model, handler=handle, tombstones=tombstones, **common)


def test_an_outbox_made_before_tombstones_takes_null_values_after_the_migration(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    old = MetaData()
    Table("outbox", old, Column("id", Integer, primary_key=True, autoincrement=True),
          Column("topic", String(200), nullable=False), Column("key", LargeBinary),
          Column("value", LargeBinary, nullable=False), Column("headers", String, nullable=False))
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO outbox (topic, key, value, headers) VALUES ('t', x'61', x'62', '[]')"))
    with engine.begin() as conn:
        allow_tombstones(conn)
        allow_tombstones(conn)  # a second run is a no-op
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO outbox (topic, key, value, headers) VALUES ('t', x'63', NULL, '[]')"))
        rows = conn.execute(text("SELECT id, key, value FROM outbox ORDER BY id")).all()
    assert rows == [(1, b"a", b"b"), (2, b"c", None)]
    # a fresh outbox is nullable from the start
    fresh = MetaData()
    outbox_table(fresh)
    assert fresh.tables["outbox"].c.value.nullable


def test_missing_columns_are_added_once_with_their_default(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'cols.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE things (id INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO things (id) VALUES (1)"))
    things = Table("things", MetaData(), Column("id", Integer, primary_key=True),
                   Column("epoch", Integer, nullable=False, server_default=text("0")),
                   Column("note", String(10), nullable=True))
    for _ in range(2):
        with engine.begin() as conn:
            add_missing_columns(conn, things, ["epoch", "note"])
    assert {c["name"] for c in inspect(engine).get_columns("things")} == {"id", "epoch", "note"}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT epoch, note FROM things")).one() == (0, None)
