"""The local Kafka broker of deploy/broker.py: it answers, and its jar cache is reused."""

from __future__ import annotations

import os

import pytest
from aiokafka.client import AIOKafkaClient

from deploy import broker


@pytest.mark.kafka
async def test_broker_answers_metadata() -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS is unset (deploy/test.sh starts a broker and sets it)")
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await client.bootstrap()
        metadata = await client.fetch_all_metadata()
    finally:
        await client.close()
    brokers = metadata.brokers()
    assert brokers, f"{bootstrap} answered without any broker in its metadata"
    advertised = {f"{b.host}:{b.port}" for b in brokers}
    assert advertised & set(bootstrap.split(",")), (advertised, bootstrap)


def test_second_fetch_is_a_cache_hit() -> None:
    broker.fetch_jars()  # a no-op too when deploy/setup.sh already fetched
    assert broker.fetch_jars() is False, "the second fetch downloaded again"
    assert (broker.cache_dir() / f"kafka_2.13-{broker.KAFKA_VERSION}.jar").is_file()
