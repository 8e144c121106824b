"""Dead-letter topics: list, show, replay (each record once)."""

from __future__ import annotations

from contextlib import aclosing

from aiokafka import AIOKafkaProducer, TopicPartition

from schemas.topics import dlq_of, topic_specs
from services.common.kafka_config import KafkaSettings, aiokafka_kwargs
from services.ops.kafka_read import Record, consumer, partitions, require, scan, to_record

REPLAY_HEADER = "dlq_replayed_from"


def dlq_topics(prefix: str = "") -> list[str]:
    return [prefix + s.name for s in topic_specs() if s.name.endswith(".dlq")]


async def records(bootstrap: KafkaSettings | str, topic: str) -> list[Record]:
    """The topic's records (:class:`~services.ops.kafka_read.NotFound` if it does not exist)."""
    return [r async for r in scan(bootstrap, [topic], strict=True)]


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
        await require(c, topic, partition)
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


def is_compacted(topic: str, prefix: str = "") -> bool:
    """Whether the topic keeps only each key's last record (its ``cleanup.policy`` in
    schemas/topics.yaml); a topic not in the list is taken as compacted."""
    for spec in topic_specs():
        if prefix + spec.name == topic:
            return "compact" in spec.cleanup_policy.split(",")
    return True


async def replay(bootstrap: KafkaSettings | str, dlq_topic: str, offset: int, *, partition: int = 0,
                 force: bool = False, prefix: str = "") -> str:
    """Send the dead letter's original record back to its original topic, once.

    The replayed record carries ``dlq_replayed_from: <dlq topic>:<partition>:<offset>``; a second
    replay of the same dead letter finds that marker on the original topic and is refused
    (``force`` overrides). Refused even with ``force``: a dead letter whose original topic is not
    the one ``dlq_topic`` belongs to, one that holds only part of its value, and one that a
    compacted original topic already has a later record of the same key for (appended after
    it, the replay would supersede that record: a newer version, or an erasure's tombstone)."""
    record = await fetch_one(bootstrap, dlq_topic, offset, partition)
    if record is None:
        raise ReplayRefused(f"no record at {dlq_topic}:{partition}:{offset}")
    original = record.headers.get("dlq_original_topic")
    if not original:
        raise ReplayRefused("the dead letter has no dlq_original_topic header")
    if dlq_of(original) != dlq_topic:
        raise ReplayRefused(f"the dead letter names {original} as its original topic, whose "
                            f"dead letters go to {dlq_of(original)}, not {dlq_topic}")
    if "dlq_value_truncated" in record.headers:  # even with force: it is not the record sent
        raise ReplayRefused(
            f"the dead letter holds the first {len(record.value or b'')} bytes of a "
            f"{record.headers['dlq_value_truncated']}-byte value: its producer must send it again")
    if "dlq_key_truncated" in record.headers:  # the same for the key
        raise ReplayRefused(
            f"the dead letter holds the first {len(record.key or b'')} bytes of a "
            f"{record.headers['dlq_key_truncated']}-byte key: its producer must send it again")
    marker = f"{dlq_topic}:{partition}:{offset}"
    await _check_original(bootstrap, original, record, marker, force=force,
                          compacted=is_compacted(original, prefix))
    headers = [(k, v) for k, v in record.raw_headers if not k.startswith("dlq_")]
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


async def _check_original(bootstrap: KafkaSettings | str, original: str, dead: Record, marker: str,
                          *, force: bool, compacted: bool) -> None:
    """One pass over the original topic: refuse a second replay (unless ``force``) and, on a
    compacted topic, a replay that would land after a later record of the dead letter's key, or
    whose original record is no longer there (compaction dropped it under a later record: an
    erasure's tombstone, itself removed a day later)."""
    since = _original_place(dead.headers)
    later: Record | None = None
    kept = False  # the original record itself is still on the topic
    async with aclosing(scan(bootstrap, [original], strict=True)) as found:
        async for r in found:
            if r.headers.get(REPLAY_HEADER) == marker:  # an earlier replay of this very record
                if not force:
                    raise ReplayRefused(
                        f"already replayed to {original} at partition {r.partition} "
                        f"offset {r.offset} (use --force to send it again)")
                kept = True  # it stands for the original, which compaction may have dropped
                continue
            if not compacted or dead.key is None or r.key != dead.key:
                continue
            if since is not None and (r.partition, r.offset) == since:
                kept = True
            if since is None or (r.partition == since[0] and r.offset > since[1]):
                later = r
    if compacted and dead.key is not None and later is None and not kept:
        # compaction drops a key's record only under a later one of that key; a tombstone is
        # itself dropped ``delete.retention.ms`` later: a key with nothing left was erased, or
        # its records are gone some other way, and the replay would bring them back for good
        place = (f"its original record (partition {since[0]} offset {since[1]})" if since is not None
                 else "no record of its key, and the dead letter has no "
                      "dlq_original_partition/offset to tell where it was")
        raise ReplayRefused(
            f"{original} is compacted and no longer holds {place}: a later record of the key "
            f"superseded it (an erasure's tombstone, perhaps, since removed), so the replay "
            f"could bring back what was erased (not even --force sends it)")
    if later is not None:
        erased = later.value is None
        where = (f"after the original's offset {since[1]}" if since is not None
                 else "and the dead letter has no dlq_original_partition/offset to tell which is later")
        raise ReplayRefused(
            f"{original} is compacted and holds {'a tombstone (an erasure)' if erased else 'a record'} "
            f"of the same key at partition {later.partition} offset {later.offset}, {where}: "
            f"compaction keeps a key's last record, so the replay would supersede it"
            f"{' and bring back what it erased' if erased else ''} (not even --force sends it)")


def _original_place(headers: dict[str, str]) -> tuple[int, int] | None:
    """(partition, offset) of the dead letter's original record, when its headers say."""
    try:
        return int(headers["dlq_original_partition"]), int(headers["dlq_original_offset"])
    except (KeyError, ValueError):
        return None
