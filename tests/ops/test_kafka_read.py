"""``kafka_read.scan`` with a fake consumer: it stops at the end offsets it saw at the start."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from services.ops import kafka_read

TOPIC = "selfcare.account.changed.v1.dlq"
# partition 0: retention deleted its five records (first offset == end offset);
# partition 1: three records, nothing deleted
FIRST = {0: 5, 1: 0}
END = {0: 5, 1: 3}


class FakeConsumer:
    """Serves ``FIRST``/``END``; like aiokafka's, ``getmany`` returns no entry for a partition
    that has nothing to fetch."""

    def __init__(self) -> None:
        self.assigned: list[TopicPartition] = []
        self.paused: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def topics(self) -> set[str]:
        return {TOPIC}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(FIRST) if topic == TOPIC else set()

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = list(tps)

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.positions[tp] = FIRST[tp.partition]

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: FIRST[tp.partition] for tp in tps}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: END[tp.partition] for tp in tps}

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0.01)  # the broker's wait, shortened
        batch: dict[TopicPartition, list[Any]] = {}
        for tp in self.assigned:
            start, end = self.positions[tp], END[tp.partition]
            if tp in self.paused or start >= end:
                continue
            batch[tp] = [SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=o, timestamp=0,
                                         key=b"k", value=b"v", headers=[]) for o in range(start, end)]
            self.positions[tp] = end
        return batch


async def test_scan_ends_on_a_partition_whose_records_were_all_deleted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka_read, "consumer", lambda bootstrap: FakeConsumer())

    async def collect() -> list[kafka_read.Record]:
        return [r async for r in kafka_read.scan("fake:9092", [TOPIC])]

    got = await asyncio.wait_for(collect(), timeout=5)
    assert [(r.partition, r.offset) for r in got] == [(1, 0), (1, 1), (1, 2)]


async def test_strict_scan_refuses_a_missing_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_read, "consumer", lambda bootstrap: FakeConsumer())
    with pytest.raises(kafka_read.NotFound, match=r"no such topic: typo\.dlq"):
        [r async for r in kafka_read.scan("fake:9092", ["typo.dlq"], strict=True)]
