"""Real-broker helpers for tests: isolated topics per test, raw produce, consume until done.

``new_prefix``, ``create_topics`` and ``produce`` live in ``deploy.launch`` (the benchmarks use
them too) and are imported from here by the tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from deploy.launch import create_topics as create_launch_topics
from deploy.launch import new_prefix, produce
from services.common.faust_private import refresh_metadata
from services.common.kafka_config import KafkaSettings, aiokafka_kwargs

__all__ = ["CREATED", "Consumed", "create_topics", "new_prefix", "produce", "read_all"]

# every prefix whose topics a test created on a plain bootstrap list: tests/conftest.py deletes
# them when the test module ends, so a long run does not leave the broker tens of thousands of
# partitions (which slowed the shared broker until its controller timed out)
CREATED: list[tuple[str, str]] = []


async def create_topics(bootstrap: KafkaSettings | str, prefix: str) -> None:
    await create_launch_topics(bootstrap, prefix)
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
                await refresh_metadata(consumer)
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
