"""How far consumer groups are behind, in records, per partition.

The lag of a partition is its end offset (the offset the next record will get) minus the group's
committed offset there: the records the group has not yet marked as processed. Every partition of
a topic the group has committed on, or its members are assigned, is shown: one the group has never
committed on counts from the partition's first retained offset.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.common.faust_private import assigned_partitions
from services.common.kafka_config import KafkaSettings
from services.ops.kafka_read import admin, consumer, partitions


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing on this partition
    end: int
    lag: int

    def line(self) -> str:
        committed = "-" if self.committed is None else str(self.committed)
        return (f"{self.group:32} {self.topic:50} {self.partition:>4} "
                f"{committed:>10} {self.end:>10} {self.lag:>8}")


HEADER = f"{'GROUP':32} {'TOPIC':50} {'PART':>4} {'COMMITTED':>10} {'END':>10} {'LAG':>8}"


async def groups_with_prefix(bootstrap: KafkaSettings | str, prefix: str) -> list[str]:
    """The consumer groups on the cluster whose id starts with ``prefix`` (sorted)."""
    client = admin(bootstrap)
    await client.start()
    try:
        listed = await client.list_consumer_groups()
    finally:
        await client.close()
    return sorted(str(g[0]) for g in listed if str(g[0]).startswith(prefix))


async def lag(bootstrap: KafkaSettings | str, groups: list[str]) -> list[PartitionLag]:
    """Every partition of every topic each group has committed on or is assigned, with its lag
    (a group with neither has no rows: its topics are unknown)."""
    client = admin(bootstrap)
    await client.start()
    committed: dict[str, dict[TopicPartition, int]] = {}
    topics: dict[str, set[str]] = {}
    try:
        for group in groups:
            offsets = await client.list_consumer_group_offsets(group)
            committed[group] = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
            topics[group] = {tp.topic for tp in committed[group]} | await assigned_topics(client, group)
    finally:
        await client.close()
    reader = consumer(bootstrap)
    await reader.start()
    try:
        existing = await reader.topics()  # a topic deleted since the group committed on it is left out
        parts = {t: sorted(await partitions(reader, t))
                 for t in set().union(*topics.values()) if t in existing}
        tps = [TopicPartition(t, p) for t, ps in parts.items() for p in ps]
        if not tps:
            return []
        ends = await reader.end_offsets(tps)
        starts = await reader.beginning_offsets(tps)
    finally:
        await reader.stop()
    rows = []
    for group in groups:
        for topic in sorted(topics[group] & parts.keys()):
            for partition in parts[topic]:
                tp = TopicPartition(topic, partition)
                done = committed[group].get(tp)
                behind = ends[tp] - (done if done is not None else starts[tp])
                rows.append(PartitionLag(group, topic, partition, done, ends[tp], max(behind, 0)))
    return rows


async def assigned_topics(client: AIOKafkaAdminClient, group: str) -> set[str]:
    """The topics the group's live members are assigned (none while it has no member or is
    rebalancing), from each member's assignment as the consumer protocol encodes it."""
    found: set[str] = set()
    for response in await client.describe_consumer_groups([group]):
        for described in response.groups:
            _error, _name, _state, protocol_type, _protocol, members, *_ = described
            for *_, assignment in members:  # the assignment is each member's last field
                found.update(topic for topic, _ in assigned_partitions(protocol_type, assignment))
    return found
