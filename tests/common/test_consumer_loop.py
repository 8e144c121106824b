"""BatchRunner with a handler that returns a completion: retries and poison records; and with an
``InOrder`` handler: writes in the order of the decisions while hashing overlaps, on the
one-by-one path too, and nothing left in line when the loop is cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from schemas.events import CodeRequested
from services.common import consumer_loop
from services.common.consumer_loop import (
    BatchRunner,
    Decided,
    Finish,
    Inbound,
    InOrder,
    RawRecord,
    each_as,
)
from services.common.metrics import ServiceMetrics
from tests.support.doubles import Relay, Sent

LOGINS = {"a": "+79161234501", "b": "+79161234502", "c": "+79161234503",
          "poison": "+79161234599"}
BY_LOGIN = {v: k for k, v in LOGINS.items()}


def record(login: str, offset: int) -> RawRecord:
    value = json.dumps({"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:31:00Z",
                        "login": LOGINS.get(login, login), "channel": "sms"}).encode()
    return RawRecord(topic="in", partition=0, offset=offset, key=None, value=value, headers=[])


class TwoPhase:
    """Decides in the handler; 'writes' in the completion, which may fail as scripted."""

    def __init__(self, *, transient_failures: int = 0) -> None:
        self.decided: list[str] = []
        self.written: list[str] = []
        self.transient_failures = transient_failures
        self.attempts = 0

    async def __call__(self, items: list[Inbound[CodeRequested]]) -> Finish:
        logins = [BY_LOGIN[i.event.login] for i in items]
        self.decided += logins

        async def complete() -> None:
            self.attempts += 1
            if self.transient_failures:
                self.transient_failures -= 1
                raise OperationalError("INSERT", {}, ConnectionError("database away"))
            if "poison" in logins:
                raise ValueError("cannot write")
            self.written += logins

        return complete


def runner(handler: Any, sent: Sent, relay: Relay) -> BatchRunner[CodeRequested]:
    return BatchRunner(
        service="t", topic="in", model=CodeRequested, handler=handler,
        publisher=sent, relay=relay, metrics=ServiceMetrics("t"),  # type: ignore[arg-type]
        max_record_bytes=10_000, retry_initial_s=0.01,
    )


async def test_a_completion_is_retried_while_the_database_is_away() -> None:
    handler, sent, relay = TwoPhase(transient_failures=2), Sent(), Relay()
    await runner(handler, sent, relay).process([record("a", 0), record("b", 1)])
    assert handler.attempts == 3 and handler.written == ["a", "b"]
    assert handler.decided == ["a", "b"]  # decided once: only the completion was retried
    assert sent.records == [] and relay.flushes == 1


async def test_a_completion_failing_on_a_poison_record_dead_letters_only_that_record() -> None:
    handler, sent, relay = TwoPhase(), Sent(), Relay()
    finish = await runner(handler, sent, relay).begin(
        [record("a", 0), record("poison", 1), record("b", 2), record(" ", 3)])
    assert handler.written == []  # nothing before the completion runs
    await finish()
    assert handler.written == ["a", "b"]  # redone one by one, start to finish
    dead = [(topic, dict(r.headers)) for topic, r in sent.records]
    assert [t for t, _ in dead] == ["in.dlq", "in.dlq"]
    assert sorted(h["dlq_error_class"] for _, h in dead) == [b"invalid_event", b"processing_error"]
    poison = next(h for _, h in dead if h["dlq_error_class"] == b"processing_error")
    assert poison["dlq_original_offset"] == b"1" and poison["dlq_error_message"] == b"ValueError"


async def test_a_dead_letter_keeps_the_original_headers_before_its_own() -> None:
    """DESIGN: the original record, unchanged — its headers too (its CloudEvents type and
    source tell ops what it was); an original header named like ours is left out, and headers
    too large for any .dlq are left out with their count."""
    handler, sent, relay = TwoPhase(), Sent(), Relay()
    ce = [("ce_type", b"crm.contract.linked.v1"), ("ce_source", b"crm"), ("x-null", None),
          ("dlq_error_class", b"forged")]
    huge = [(f"h{i}", b"x" * 1024) for i in range(70)]
    records = [RawRecord(topic="in", partition=0, offset=1, key=b"a", value=b" ", headers=ce),
               RawRecord(topic="in", partition=0, offset=2, key=b"b", value=b" ", headers=huge)]
    await runner(handler, sent, relay).process(records)
    dead = {r.key: r.headers for topic, r in sent.records if topic == "in.dlq"}
    assert dead[b"a"][:3] == ce[:3]  # unchanged, in order, first
    assert dict(dead[b"a"])["dlq_error_class"] == b"invalid_json"
    assert [k for k, _ in dead[b"a"]].count("dlq_error_class") == 1
    assert not [k for k, _ in dead[b"b"] if k.startswith("h")]
    assert dict(dead[b"b"])["dlq_headers_dropped"] == b"70"


async def test_a_tombstone_is_dead_lettered_as_a_tombstone_with_its_key() -> None:
    handler, sent, relay = TwoPhase(), Sent(), Relay()
    tombstone = RawRecord(topic="in", partition=2, offset=7, key=b"k-1", value=None, headers=[])
    empty = RawRecord(topic="in", partition=2, offset=8, key=b"k-2", value=b"", headers=[])
    await runner(handler, sent, relay).process([tombstone, record("a", 9), empty])
    dead = {r.key: r for topic, r in sent.records if topic == "in.dlq"}
    assert dead[b"k-1"].value is None  # a null value, not b""
    assert dict(dead[b"k-1"].headers)["dlq_error_class"] == b"empty_record"
    assert dead[b"k-2"].value == b""
    assert dict(dead[b"k-2"].headers)["dlq_error_class"] == b"invalid_json"
    assert handler.written == ["a"]


class Pipelined:
    """Decides a batch at once and 'hashes' it for as long as ``hash_s`` says; the write fails
    on a poison record. Everything it does goes to ``timeline``."""

    def __init__(self, hash_s: dict[str, float]) -> None:
        self.hash_s = hash_s
        self.timeline: list[str] = []
        self.seen: list[tuple[str, list[str]]] = []  # each decision and what it was given
        self.abandoned: list[str] = []
        self.handler: InOrder[Inbound[CodeRequested], str] = InOrder(self.decide)

    def written(self) -> list[str]:
        return [t.removeprefix("write ") for t in self.timeline if t.startswith("write ")]

    async def decide(self, items: list[Inbound[CodeRequested]], ahead: list[str]
                     ) -> Decided[str]:
        name = "+".join(BY_LOGIN[i.event.login] for i in items)
        self.seen.append((name, list(ahead)))
        self.timeline.append(f"decide {name}")
        hashing = asyncio.ensure_future(asyncio.sleep(self.hash_s.get(name, 0.0)))
        hashing.add_done_callback(
            lambda f: None if f.cancelled() else self.timeline.append(f"hashed {name}"))

        async def write() -> None:
            await hashing
            if "poison" in name:
                raise ValueError("cannot write")
            self.timeline.append(f"write {name}")

        def abandon() -> None:
            hashing.cancel()
            self.abandoned.append(name)

        return Decided(carries=name, write=write, abandon=abandon)


class Stream:
    def __init__(self) -> None:
        self.acked: list[int] = []

    async def ack(self, event: Any) -> None:
        self.acked.append(event.message.offset)


def feed(monkeypatch: pytest.MonkeyPatch, batches: list[list[RawRecord]], *,
         then_wait: bool = False) -> None:
    """``run`` takes ``batches`` from the stream (then, if asked, waits for more forever)."""
    async def take(stream: Any, max_: int, within: float) -> AsyncIterator[list[Any]]:
        for batch in batches:
            yield [SimpleNamespace(message=r) for r in batch]
        if then_wait:
            await asyncio.Event().wait()

    monkeypatch.setattr(consumer_loop, "take_batches", take)


def stamped(login: str, offset: int) -> RawRecord:
    r = record(login, offset)
    return RawRecord(topic=r.topic, partition=r.partition, offset=r.offset, key=r.key,
                     value=r.value, headers=r.headers, timestamp=None)


async def test_writes_run_in_decision_order_while_hashing_overlaps(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake, sent, relay, stream = Pipelined({"a": 0.3, "b": 0.1}), Sent(), Relay(), Stream()
    feed(monkeypatch, [[stamped(k, n)] for n, k in enumerate("abc")])
    await asyncio.wait_for(runner(fake.handler, sent, relay).run(stream), 5)
    assert fake.written() == ["a", "b", "c"]
    t = fake.timeline.index
    assert t("decide c") < t("hashed c") < t("hashed b") < t("hashed a")  # while a hashes
    assert t("hashed a") < t("write a") < t("write b") < t("write c")
    assert fake.seen == [("a", []), ("b", ["a"]), ("c", ["a", "b"])]  # a, b not written yet
    assert stream.acked == [0, 1, 2] and len(fake.handler.pending) == 0 and sent.records == []


async def test_a_batch_given_up_is_redone_one_by_one_behind_the_batches_decided_since(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake, sent, relay, stream = Pipelined({"a+poison": 0.1}), Sent(), Relay(), Stream()
    feed(monkeypatch, [[stamped("a", 0), stamped("poison", 1)], [stamped("b", 2)]])
    await asyncio.wait_for(runner(fake.handler, sent, relay).run(stream), 5)
    assert fake.seen == [("a+poison", []), ("b", ["a+poison"]), ("a", ["b"]), ("poison", [])]
    assert fake.written() == ["b", "a"]  # the order of the decisions, the redo's included
    assert fake.abandoned == ["a+poison", "poison"] and len(fake.handler.pending) == 0
    [(topic, dead)] = sent.records
    assert topic == "in.dlq" and dict(dead.headers)["dlq_original_offset"] == b"1"
    assert stream.acked == [0, 1, 2]


async def test_a_cancelled_loop_leaves_nothing_in_line(monkeypatch: pytest.MonkeyPatch) -> None:
    fake, sent, relay, stream = Pipelined({"a": 3600}), Sent(), Relay(), Stream()
    feed(monkeypatch, [[stamped("a", 0)], [stamped("b", 1)]], then_wait=True)
    loop_runner = runner(fake.handler, sent, relay)
    running = asyncio.ensure_future(loop_runner.run(stream))
    await asyncio.sleep(0.05)
    assert fake.handler.ahead() == ["a", "b"]  # b waits for a, which is still hashing
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await asyncio.sleep(0.01)
    assert sorted(fake.abandoned) == ["a", "b"] and len(fake.handler.pending) == 0
    assert stream.acked == [] and fake.written() == []
    await asyncio.wait_for(loop_runner.process([stamped("c", 2)]), 1)  # a restart is not held up
    assert fake.written() == ["c"] and fake.seen[-1] == ("c", [])


async def test_any_handler_with_a_stop_hook_is_stopped_when_the_loop_ends(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Holding:
        """Not an ``InOrder``: a handler of its own that holds work between batches."""

        def __init__(self) -> None:
            self.events: list[str] = []

        async def __call__(self, items: list[Inbound[CodeRequested]]) -> None:
            self.events.append(f"handled {items[0].raw.offset}")

        def stop(self) -> None:
            self.events.append("stopped")

    sent, relay = Sent(), Relay()
    for then_wait in (False, True):  # the stream ends; the loop is cancelled
        holding, stream = Holding(), Stream()
        feed(monkeypatch, [[stamped("a", 0)], [stamped("b", 1)]], then_wait=then_wait)
        running = asyncio.ensure_future(runner(holding, sent, relay).run(stream))
        await asyncio.sleep(0.05)
        if then_wait:
            assert holding.events == ["handled 0", "handled 1"]  # not stopped while it runs
            running.cancel()
        with pytest.raises(asyncio.CancelledError) if then_wait else contextlib.nullcontext():
            await running
        assert holding.events == ["handled 0", "handled 1", "stopped"]


async def test_each_as_hands_one_command_per_event_to_the_service_layer_in_one_call() -> None:
    calls: list[list[str]] = []

    async def handle(commands: list[str]) -> None:
        calls.append(commands)

    sent, relay = Sent(), Relay()
    await runner(each_as(lambda e: BY_LOGIN[e.login], handle), sent, relay).process(
        [record("b", 0), record("a", 1), record("not json", 2), record("c", 3)])
    assert calls == [["b", "a", "c"]]  # in offset order; the malformed record went to the DLQ
    assert [topic for topic, _ in sent.records] == ["in.dlq"]
