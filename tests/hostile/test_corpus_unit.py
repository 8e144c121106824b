"""The hostile corpus through the shared consumer loop with the services' own models (fakes for
the broker and the handler): each bad record is dead-lettered unchanged with its class, each
record the contract answers reaches the handler. tests/hostile/test_workers.py runs the same
corpus against the real services."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.events import AccountChanged, CodeIssued, CodeRequested, Event, PasswordChanged
from schemas.topics import (
    ACCOUNT_CHANGED,
    CODE_ISSUED,
    CODE_REQUESTED,
    CONTRACT_ERASED,
    CONTRACT_LINKED,
    CONTRACT_TERMINATED,
    PASSWORD_CHANGED,
    REQUESTS_BY_LOGIN,
)
from services.common.consumer_loop import BatchRunner, Inbound, RawRecord
from services.common.metrics import ServiceMetrics
from services.registration.entrypoints.agents import (
    InboundContractErased,
    InboundContractLinked,
    InboundContractTerminated,
)
from tests.hostile.corpus import (
    INBOUND_TOPICS,
    MARKER,
    MAX_RECORD_BYTES,
    SECRET_DIGITS,
    TOMBSTONED_AT_ERASURE,
    Case,
    corpus,
    kinds,
)
from tests.support.doubles import Relay, Sent

MODELS: dict[str, type[Event]] = {
    CONTRACT_LINKED: InboundContractLinked,
    CONTRACT_TERMINATED: InboundContractTerminated,
    CONTRACT_ERASED: InboundContractErased,
    ACCOUNT_CHANGED: AccountChanged,
    CODE_REQUESTED: CodeRequested,
    REQUESTS_BY_LOGIN: CodeRequested,
    CODE_ISSUED: CodeIssued,
    PASSWORD_CHANGED: PasswordChanged,
}
CASES = corpus()


class Erased:
    def __init__(self) -> None:
        self.keys: list[bytes | None] = []

    async def __call__(self, records: list[RawRecord]) -> None:
        self.keys.extend(r.key for r in records)


class Handled:
    def __init__(self) -> None:
        self.items: list[Inbound[Any]] = []

    async def __call__(self, items: list[Inbound[Any]]) -> None:
        self.items.extend(items)


def test_the_corpus_has_at_least_50_kinds_on_every_inbound_topic() -> None:
    assert len(kinds(CASES)) >= 50
    assert {case.topic for case in CASES} == set(INBOUND_TOPICS)
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
async def test_fate_of_each_case_in_the_consumer_loop(case: Case) -> None:
    sent, handled, erased, ignored = Sent(), Handled(), Erased(), Erased()
    runner: BatchRunner[Any] = BatchRunner(
        service="probe", topic=case.topic, model=MODELS[case.topic], handler=handled,
        publisher=sent, relay=Relay(), metrics=ServiceMetrics("probe"),  # type: ignore[arg-type]
        max_record_bytes=MAX_RECORD_BYTES,
        # as recovery and the notifier: the account topic's erase, the others' do nothing
        tombstones=erased if case.topic == ACCOUNT_CHANGED
        else ignored if case.topic in TOMBSTONED_AT_ERASURE else None,
    )
    record = RawRecord(topic="p." + case.topic, partition=3, offset=42, key=case.record_key,
                       value=case.value, headers=[("ce_id", b"x")])
    await runner.process([record])
    kind, _, expected = case.fate.partition(":")
    if kind == "erasure":
        assert sent.records == [] and handled.items == []
        assert erased.keys == [case.record_key]
    elif kind == "ignored":
        assert sent.records == [] and handled.items == [] and erased.keys == []  # no dead letter
        assert ignored.keys == [case.record_key]  # it reached the tombstone handler
    elif kind == "dlq":
        assert handled.items == []
        assert len(sent.records) == 1
        topic, dead = sent.records[0]
        headers = {k: v.decode() for k, v in dead.headers}
        assert topic == case.topic + ".dlq"
        assert headers["dlq_error_class"] == expected, headers["dlq_error_message"]
        assert (dead.key, dead.value) == (case.record_key, case.value)
        assert headers["dlq_original_topic"] == "p." + case.topic
        assert (headers["dlq_original_partition"], headers["dlq_original_offset"]) == ("3", "42")
        text = " ".join(headers.values())
        assert MARKER not in text and SECRET_DIGITS not in text
    else:
        assert sent.records == [] and len(handled.items) == 1
        assert str(handled.items[0].event.event_id) == case.event_id
