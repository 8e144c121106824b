"""Rebuilding the projection: when the accounts table is empty but the consumer group has
committed offsets on the account topic (the database was wiped or replaced), set those offsets
back to 0 before the worker joins the group, so the compacted topic is read again from its
beginning. Done before faust starts, because faust seeks to the committed offsets itself
after every assignment."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import OffsetAndMetadata

from services.common.faust_private import refresh_metadata
from services.common.kafka_config import KafkaSettings, aiokafka_kwargs

log = logging.getLogger(__name__)


async def rewind_topic(*, bootstrap: KafkaSettings | str, group_id: str, topic: str,
                       wait_s: float = 90.0) -> list[int]:
    """Commit offset 0 for every partition of ``topic`` that has a committed offset in
    ``group_id``; returns those partitions. Needs no member of the group to be running.

    A broker not answering yet is waited for, up to ``wait_s`` (within the start-up probe's two
    minutes): services and brokers started together, as ``kubectl apply`` does, would otherwise
    leave recovery crash-looping, with a back-off that grows to minutes."""
    loop = asyncio.get_running_loop()
    deadline, delay = loop.time() + wait_s, 1.0
    while True:
        consumer = AIOKafkaConsumer(**aiokafka_kwargs(bootstrap), group_id=group_id,
                                    enable_auto_commit=False)
        try:
            await consumer.start()
            break
        except KafkaConnectionError:
            await consumer.stop()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise
            log.warning("Kafka not reachable yet; retrying in %.0f s", min(delay, remaining))
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 10.0)
    try:
        await refresh_metadata(consumer)
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        moved = {}
        for tp in tps:
            offset = await consumer.committed(tp)
            if offset is not None and offset > 0:
                moved[tp] = OffsetAndMetadata(0, "")
        if moved:
            await consumer.commit(moved)
            log.warning("accounts table empty: account topic rewound to rebuild the projection",
                        extra={"partitions": sorted(tp.partition for tp in moved)})
        return sorted(tp.partition for tp in moved)
    finally:
        await consumer.stop()
