"""Real-broker helpers for tests: isolated topics per test, raw produce, consume until done."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from deploy import topics as topic_admin
from services.common.kafka_config import KafkaSettings, aiokafka_kwargs


def new_prefix() -> str:
    """A fresh namespace: every topic and consumer group of one test gets it."""
    return f"t{uuid.uuid4().hex[:10]}."


# every prefix whose topics a test created on a plain bootstrap list: tests/conftest.py deletes
# them when the test module ends, so a long run does not leave the broker tens of thousands of
# partitions (which slowed the shared broker until its controller timed out)
CREATED: list[tuple[str, str]] = []


async def create_topics(bootstrap: KafkaSettings | str, prefix: str) -> None:
    await topic_admin.apply(bootstrap, prefix=prefix, replication_factor=1)
    if isinstance(bootstrap, str):
        CREATED.append((bootstrap, prefix))


@dataclass(frozen=True)
class Consumed:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


async def produce(
    bootstrap: KafkaSettings | str,
    topic: str,
    records: Sequence[tuple[Any, ...]],
) -> None:
    """Send raw (key, value[, headers]) records in order and wait for the broker's acks."""
    producer = AIOKafkaProducer(
        **aiokafka_kwargs(bootstrap), acks="all", max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        futures = []
        for rec in records:
            key, value = rec[0], rec[1]
            headers = rec[2] if len(rec) > 2 else None  # type: ignore[misc]
            futures.append(await producer.send(topic, value=value, key=key, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(
    bootstrap: KafkaSettings | str,
    topic: str,
    *,
    until: Callable[[list[Consumed]], bool] | None = None,
    timeout_s: float = 30.0,
    idle_s: float = 1.0,
) -> list[Consumed]:
    """Read ``topic`` from the beginning (no group). Stops when ``until`` holds, or — without
    ``until`` — after ``idle_s`` with nothing new; raises ``TimeoutError`` if ``until`` never holds."""
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(bootstrap), enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    out: list[Consumed] = []
    try:
        deadline = time.monotonic() + timeout_s
        parts: set[int] | None = None
        while parts is None and time.monotonic() < deadline:
            parts = consumer.partitions_for_topic(topic)  # type: ignore[assignment]
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic)  # type: ignore[assignment]
                if not parts:
                    parts = None
                    await asyncio.sleep(0.2)
        if not parts:
            raise TimeoutError(f"topic {topic} not found")
        consumer.assign([TopicPartition(topic, p) for p in parts])
        await consumer.seek_to_beginning()
        last_new = time.monotonic()
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                for m in msgs:
                    out.append(Consumed(
                        topic=m.topic, partition=m.partition, offset=m.offset, key=m.key,
                        value=m.value,
                        headers={k: v.decode("utf-8", "replace") for k, v in (m.headers or [])},
                    ))
                    last_new = time.monotonic()
            if until is not None and until(out):
                return out
            if until is None and time.monotonic() - last_new > idle_s:
                return out
            if time.monotonic() > deadline:
                if until is None:
                    return out
                raise TimeoutError(f"{topic}: condition not met after {timeout_s}s ({len(out)} records)")
    finally:
        await consumer.stop()
