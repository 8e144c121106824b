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
    ``until`` — once every partition was read up to the end offset it had when the read began,
    and then ``idle_s`` passed with nothing new (so records produced a moment later are still
    awaited). Raises ``TimeoutError`` if ``until`` never holds, or — without ``until`` — if those
    end offsets are not reached within ``timeout_s`` (a slow broker gives an error, never a
    silently short list)."""
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
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning()
        # without ``until``: what the topic held when the read began must all be read before the
        # idle clock may run (a slow first fetch must not end the read with nothing)
        pending: dict[TopicPartition, int] = {}
        if until is None:
            ends = await asyncio.wait_for(consumer.end_offsets(tps), max(0.1, deadline - time.monotonic()))
            pending = {tp: end for tp, end in ends.items() if end > 0}
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
            if pending:
                for tp in list(pending):
                    position = await asyncio.wait_for(
                        consumer.position(tp), max(0.1, deadline - time.monotonic()))
                    if position >= pending[tp]:
                        del pending[tp]
                if not pending:
                    last_new = time.monotonic()  # caught up: idle_s counts from here
            if until is None and not pending and time.monotonic() - last_new > idle_s:
                return out
            if time.monotonic() > deadline:
                if until is None and not pending:
                    return out  # records kept arriving past the deadline: what was read so far
                if until is None:
                    raise TimeoutError(
                        f"{topic}: end offsets {pending} not reached after {timeout_s}s ({len(out)} records)")
                raise TimeoutError(f"{topic}: condition not met after {timeout_s}s ({len(out)} records)")
    finally:
        await consumer.stop()
