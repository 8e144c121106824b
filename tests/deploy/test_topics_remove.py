"""Removing a prefixed set of topics (what the benchmarks do when they finish)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from deploy.topics import apply, remove
from schemas.topics import topic_specs
from tests.support.kafka import new_prefix


async def names(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_remove_deletes_the_prefixed_topics_only(kafka_bootstrap: str) -> None:
    gone, kept = new_prefix(), new_prefix()
    await apply(kafka_bootstrap, prefix=gone, replication_factor=1)
    await apply(kafka_bootstrap, prefix=kept, replication_factor=1)
    removed = await remove(kafka_bootstrap, prefix=gone)
    assert sorted(removed) == sorted(gone + s.name for s in topic_specs())
    for _ in range(100):  # deletion reaches the metadata a moment later
        left = await names(kafka_bootstrap)
        if not any(n.startswith(gone) for n in left):
            break
        await asyncio.sleep(0.1)
    assert not any(n.startswith(gone) for n in left)
    assert {kept + s.name for s in topic_specs()} <= left
    assert await remove(kafka_bootstrap, prefix=kept)


async def test_remove_refuses_an_empty_prefix(kafka_bootstrap: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        await remove(kafka_bootstrap, prefix="")
