"""How far consumer groups are behind, in records, per partition.

The lag of a partition is its end offset (the offset the next record will get) minus the group's
committed offset there: the records the group has not yet marked as processed. A partition the
group has never committed on counts from the partition's first retained offset.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition

from services.common.kafka_config import KafkaSettings
from services.ops.kafka_read import admin, consumer


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
    """Every partition each group has committed on, or consumes, with its lag."""
    client = admin(bootstrap)
    await client.start()
    committed: dict[str, dict[TopicPartition, int]] = {}
    try:
        for group in groups:
            offsets = await client.list_consumer_group_offsets(group)
            committed[group] = {tp: meta.offset for tp, meta in offsets.items()}
    finally:
        await client.close()
    tps = sorted({tp for per_group in committed.values() for tp in per_group})
    if not tps:
        return []
    reader = consumer(bootstrap)
    await reader.start()
    try:
        ends = await reader.end_offsets(tps)
        starts = await reader.beginning_offsets(tps)
    finally:
        await reader.stop()
    rows = []
    for group in groups:
        for tp, offset in sorted(committed[group].items()):
            done = offset if offset >= 0 else None
            behind = ends[tp] - (done if done is not None else starts[tp])
            rows.append(PartitionLag(group, tp.topic, tp.partition, done, ends[tp], max(behind, 0)))
    return rows
