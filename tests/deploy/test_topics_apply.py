"""Applying the topic list to topics that exist with older configs: a topic made before it was
compacted (``cleanup.policy=delete``) is altered to ``compact,delete``, and reported once."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.topics import apply, describe, desired_configs, remove
from schemas.topics import CODE_ISSUED, NOTIFICATION_STATUS, PASSWORD_CHANGED, topic_specs
from tests.support.kafka import new_prefix

COMPACTED_TOO = (CODE_ISSUED, PASSWORD_CHANGED, NOTIFICATION_STATUS)


async def test_apply_alters_the_cleanup_policy_of_an_existing_topic(kafka_bootstrap: str) -> None:
    prefix = new_prefix()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([  # as an earlier release made them
            NewTopic(name=prefix + spec.name, num_partitions=spec.partitions, replication_factor=1,
                     topic_configs={**desired_configs(spec, 1), "cleanup.policy": "delete"})
            for spec in topic_specs() if spec.name in COMPACTED_TOO])
        changes = await apply(kafka_bootstrap, prefix=prefix, replication_factor=1)
        altered = [line for line in changes if ": configs " in line]
        assert sorted(altered) == sorted(f"{prefix + name}: configs ['cleanup.policy']"
                                         for name in COMPACTED_TOO)
        for _ in range(100):  # the broker applies an altered config a moment later
            states = await describe(admin, [prefix + name for name in COMPACTED_TOO])
            policies = {s.configs["cleanup.policy"] for s in states.values()}
            if policies == {"compact,delete"}:
                break
            await asyncio.sleep(0.1)
        assert policies == {"compact,delete"}
        assert await apply(kafka_bootstrap, prefix=prefix, replication_factor=1) == []
    finally:
        await admin.close()
        await remove(kafka_bootstrap, prefix=prefix)
