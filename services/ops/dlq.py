"""Dead-letter topics: list, show, replay (each record once)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer, TopicPartition

from schemas.topics import topic_specs
from services.common.kafka_config import KafkaSettings, aiokafka_kwargs
from services.ops.kafka_read import Record, consumer, partitions, scan, to_record

REPLAY_HEADER = "dlq_replayed_from"


def dlq_topics(prefix: str = "") -> list[str]:
    return [prefix + s.name for s in topic_specs() if s.name.endswith(".dlq")]


async def records(bootstrap: KafkaSettings | str, topic: str) -> list[Record]:
    return [r async for r in scan(bootstrap, [topic])]


async def counts(bootstrap: KafkaSettings | str, prefix: str = "") -> dict[str, int]:
    result: dict[str, int] = {}
    c = consumer(bootstrap)
    await c.start()
    try:
        existing = await c.topics()
        for topic in dlq_topics(prefix):
            if topic not in existing:
                result[topic] = 0
                continue
            tps = [TopicPartition(topic, p) for p in await partitions(c, topic)]
            begin = await c.beginning_offsets(tps)
            end = await c.end_offsets(tps)
            result[topic] = sum(end[tp] - begin[tp] for tp in tps)
    finally:
        await c.stop()
    return result


async def fetch_one(
    bootstrap: KafkaSettings | str, topic: str, offset: int, partition: int = 0
) -> Record | None:
    c = consumer(bootstrap)
    await c.start()
    try:
        tp = TopicPartition(topic, partition)
        c.assign([tp])
        end = (await c.end_offsets([tp]))[tp]
        if offset >= end:
            return None
        c.seek(tp, offset)
        batch = await c.getmany(tp, timeout_ms=5000, max_records=1)
        for msgs in batch.values():
            for m in msgs:
                if m.offset == offset:
                    return to_record(m)
        return None
    finally:
        await c.stop()


class ReplayRefused(Exception):
    pass


async def replay(bootstrap: KafkaSettings | str, dlq_topic: str, offset: int, *, partition: int = 0,
                 force: bool = False) -> str:
    """Send the dead letter's original record back to its original topic, once.

    The replayed record carries ``dlq_replayed_from: <dlq topic>:<partition>:<offset>``; a second
    replay of the same dead letter finds that marker on the original topic and is refused
    (``force`` overrides)."""
    record = await fetch_one(bootstrap, dlq_topic, offset, partition)
    if record is None:
        raise ReplayRefused(f"no record at {dlq_topic}:{partition}:{offset}")
    original = record.headers.get("dlq_original_topic")
    if not original:
        raise ReplayRefused("the dead letter has no dlq_original_topic header")
    if "dlq_value_truncated" in record.headers:  # even with force: it is not the record sent
        raise ReplayRefused(
            f"the dead letter holds the first {len(record.value or b'')} bytes of a "
            f"{record.headers['dlq_value_truncated']}-byte value: its producer must send it again")
    marker = f"{dlq_topic}:{partition}:{offset}"
    if not force:
        async for earlier in scan(bootstrap, [original]):
            if earlier.headers.get(REPLAY_HEADER) == marker:
                raise ReplayRefused(
                    f"already replayed to {original} at partition {earlier.partition} "
                    f"offset {earlier.offset} (use --force to send it again)"
                )
    headers = [(k, v.encode()) for k, v in record.headers.items() if not k.startswith("dlq_")]
    headers.append((REPLAY_HEADER, marker.encode()))
    producer = AIOKafkaProducer(**aiokafka_kwargs(bootstrap), acks="all", enable_idempotence=True,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        meta = await producer.send_and_wait(original, value=record.value, key=record.key,
                                            headers=headers)
    finally:
        await producer.stop()
    return f"{original}:{meta.partition}:{meta.offset}"
