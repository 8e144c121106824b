"""BatchRunner with a handler that returns a completion: retries and poison records."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from sqlalchemy.exc import OperationalError

from schemas.events import CodeRequested
from services.common.codec import WireRecord
from services.common.consumer_loop import BatchRunner, Finish, Inbound, RawRecord
from services.common.metrics import ServiceMetrics


class Sent:
    def __init__(self) -> None:
        self.records: list[tuple[str, WireRecord]] = []

    async def send_all(self, items: Sequence[tuple[str, WireRecord]]) -> None:
        self.records.extend(items)


class Relay:
    def __init__(self) -> None:
        self.flushes = 0

    async def flush(self) -> int:
        self.flushes += 1
        return 0


LOGINS = {"a": "+79161234501", "b": "+79161234502", "poison": "+79161234599"}
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


def runner(handler: TwoPhase, sent: Sent, relay: Relay) -> BatchRunner[CodeRequested]:
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
