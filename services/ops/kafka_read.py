"""Bounded reads of whole topics (up to their end offsets at the time of the call)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.common.faust_private import wait_on_metadata
from services.common.kafka_config import KafkaSettings, aiokafka_kwargs


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]  # as text, for reading (a null value as "")
    raw_headers: tuple[tuple[str, bytes | None], ...] = ()  # as they are, in order


class NotFound(LookupError):
    """The cluster has no such topic, or the topic no such partition; the message says which."""


async def partitions(c: AIOKafkaConsumer, topic: str) -> set[int]:
    """The topic's partitions (fetching its metadata first if the client has none)."""
    found = c.partitions_for_topic(topic)
    if not found:
        await wait_on_metadata(c, topic)
        found = c.partitions_for_topic(topic)
    return set(found or ())


async def require(c: AIOKafkaConsumer, topic: str, partition: int | None = None) -> set[int]:
    """The partitions of ``topic``; :class:`NotFound` when it, or ``partition`` of it, does not exist
    (instead of waiting on metadata that never comes)."""
    if topic not in await c.topics():
        raise NotFound(f"no such topic: {topic}")
    found = await partitions(c, topic)
    if partition is not None and partition not in found:
        raise NotFound(f"no such partition: {topic} has no partition {partition}")
    return found


def consumer(kafka: KafkaSettings | str) -> AIOKafkaConsumer:
    """A group-less reader; ``kafka`` is the cluster (a bare bootstrap string: PLAINTEXT)."""
    return AIOKafkaConsumer(
        **aiokafka_kwargs(kafka), enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )


def admin(kafka: KafkaSettings | str) -> AIOKafkaAdminClient:
    """An admin client for the same cluster, with the same connection settings as :func:`consumer`."""
    return AIOKafkaAdminClient(**aiokafka_kwargs(kafka))


async def scan(
    bootstrap: KafkaSettings | str, topics: list[str], *, strict: bool = False
) -> AsyncGenerator[Record, None]:
    """Every record now in ``topics``, then stop. A missing topic is skipped (``strict``:
    :class:`NotFound`).

    A partition is done once the position reaches its end offset; one whose records are all gone
    (retention or ``delete_records``: first offset == end offset) is done from the start, as a
    fetch never returns an empty partition."""
    c = consumer(bootstrap)
    await c.start()
    try:
        existing = await c.topics()
        missing = [t for t in topics if t not in existing]
        if strict and missing:
            raise NotFound(f"no such topic: {missing[0]}")
        tps = [
            TopicPartition(t, p)
            for t in topics if t in existing
            for p in sorted(await partitions(c, t))
        ]
        if not tps:
            return
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        starts = await c.beginning_offsets(tps)
        ends = await c.end_offsets(tps)
        remaining = {tp for tp in tps if starts[tp] < ends[tp]}
        for tp in tps:
            if tp not in remaining:
                c.pause(tp)
        while remaining:
            batch = await c.getmany(timeout_ms=500)
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset < ends[tp]:
                        yield to_record(m)
            for tp in sorted(remaining):
                if await c.position(tp) >= ends[tp]:
                    remaining.discard(tp)
                    c.pause(tp)
    finally:
        await c.stop()


def header_text(value: bytes | None) -> str:
    """A header's value as text: a null value is empty, bytes that are not UTF-8 are replaced."""
    return (value or b"").decode("utf-8", "replace")


def to_record(m: object) -> Record:
    return Record(
        topic=m.topic, partition=m.partition, offset=m.offset,  # type: ignore[attr-defined]
        timestamp_ms=m.timestamp, key=m.key, value=m.value,  # type: ignore[attr-defined]
        headers={k: header_text(v) for k, v in (m.headers or [])},  # type: ignore[attr-defined]
        raw_headers=tuple(m.headers or ()),  # type: ignore[attr-defined]
    )
