"""Applying the topic list to topics that exist with older configs: a topic made before it was
compacted (``cleanup.policy=delete``) is altered to ``compact,delete``, and reported once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.topics import apply, describe, desired_configs, remove
from schemas.topics import ACCOUNT_CHANGED, CODE_ISSUED, NOTIFICATION_STATUS, PASSWORD_CHANGED, topic_specs
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
        for _ in range(100):  # made before: listed by the broker's metadata by now
            if len(await describe(admin, [prefix + name for name in COMPACTED_TOO])) == 3:
                break
            await asyncio.sleep(0.1)
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


async def test_apply_bounds_the_compaction_lag_of_a_compacted_topic_made_before(kafka_bootstrap: str) -> None:
    """An erasure's tombstone must compact the key's records away within 24 h: a compacted topic
    an earlier release made without ``max.compaction.lag.ms`` is given it."""
    prefix = new_prefix()
    spec = next(s for s in topic_specs() if s.name == ACCOUNT_CHANGED)
    earlier = {k: v for k, v in desired_configs(spec, 1).items() if k != "max.compaction.lag.ms"}
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name=prefix + spec.name, num_partitions=spec.partitions,
                                            replication_factor=1, topic_configs=earlier)])
        for _ in range(100):  # made before: listed by every broker's metadata by now
            if await describe(admin, [prefix + spec.name]):
                break
            await asyncio.sleep(0.1)
        changes = await apply(kafka_bootstrap, prefix=prefix, replication_factor=1)
        assert f"{prefix + spec.name}: configs ['max.compaction.lag.ms']" in changes
        for _ in range(100):  # the broker applies an altered config a moment later
            states = await describe(admin, [prefix + s.name for s in topic_specs()])
            lags = {name[len(prefix):]: st.configs.get("max.compaction.lag.ms")
                    for name, st in states.items()}
            if lags[spec.name] == "86400000":
                break
            await asyncio.sleep(0.1)
        compacted = {s.name for s in topic_specs() if "compact" in s.cleanup_policy.split(",")}
        assert compacted == {ACCOUNT_CHANGED, *COMPACTED_TOO}
        assert {name for name, lag in lags.items() if lag == "86400000"} == compacted
    finally:
        await admin.close()
        await remove(kafka_bootstrap, prefix=prefix)


class _JustCreatedElsewhere:
    """An admin client answering as brokers do right after another applier created a topic with
    3 replicas: the topic is listed, and every other description (from a broker that has not
    learnt of the partitions yet) has no partition."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.descriptions = 0

    async def list_topics(self) -> list[str]:
        return [self.name]

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        self.descriptions += 1
        partitions = [] if self.descriptions % 2 else [
            {"partition": i, "leader": 1 + i % 3, "replicas": [1, 2, 3]} for i in range(4)]
        return [{"topic": n, "error_code": 0, "partitions": partitions} for n in names]

    async def describe_configs(self, resources: list[Any]) -> list[Any]:
        entries = [("min.insync.replicas", "2")]
        return [SimpleNamespace(resources=[(0, None, 2, r.name, entries) for r in resources])]


class _ConfigsNotYetKnown(_JustCreatedElsewhere):
    """As above, and the broker asked for the configs answers twice that it does not know the
    topic (error 3) before it does, as a cluster's other brokers do for a moment."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.config_asks = 0

    async def describe_configs(self, resources: list[Any]) -> list[Any]:
        self.config_asks += 1
        if self.config_asks <= 2:
            return [SimpleNamespace(resources=[(3, "", 2, r.name, []) for r in resources])]
        return await super().describe_configs(resources)


async def test_configs_asked_of_a_broker_that_does_not_know_the_topic_yet_are_asked_again() -> None:
    admin = _ConfigsNotYetKnown("p.topic")
    states = await describe(admin, ["p.topic"])  # type: ignore[arg-type]
    assert admin.config_asks == 3
    assert states["p.topic"].configs == {"min.insync.replicas": "2"}


async def test_a_topic_described_before_its_partitions_are_is_waited_for_not_read_as_one_replica() -> None:
    admin = _JustCreatedElsewhere("p.topic")
    states = await describe(admin, ["p.topic"])  # type: ignore[arg-type]
    assert admin.descriptions >= 2
    state = states["p.topic"]
    assert (state.partitions, state.replication_factor) == (4, 3)
    assert desired_configs(topic_specs()[0], state.replication_factor)["min.insync.replicas"] == "2"
