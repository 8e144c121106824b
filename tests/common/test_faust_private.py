"""The private faust and aiokafka API the services rely on, pinned and exercised in one place.

An upgrade of faust-streaming or aiokafka fails here first: the versions are pinned, and every
function of ``services.common.faust_private`` is run against a real app, stream, web server or
consumer (the consumer on the real broker), with its effect checked from the outside.
"""

from __future__ import annotations

import asyncio

import aiokafka
import faust
from aiohttp.web import AppRunner
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from deploy.launch import free_port, produce
from schemas.topics import CODE_REQUESTED
from services.common import faust_private
from services.common.consumer_loop import take_batches
from services.common.faust_private import (
    IdempotentProducer,
    IdempotentTransport,
    SelfcareApp,
    kafka_producer,
    refresh_metadata,
    replace_web_runner,
    set_auto_offset_reset,
    wait_on_metadata,
)
from services.common.kafka_config import aiokafka_kwargs

BROKER_URL = "kafka://127.0.0.1:9092"  # the app is never started: nothing connects to it


def test_the_installed_versions_are_the_pinned_ones() -> None:
    assert faust.__version__ == faust_private.FAUST_VERSION
    assert aiokafka.__version__ == faust_private.AIOKAFKA_VERSION


async def test_a_stream_is_drained_passively_and_its_processor_removed() -> None:
    """``take_batches`` needs both stream accesses: without ``enable_passive`` no record
    reaches the batch; without ``remove_processor`` the batch's processor stays behind."""
    app = faust.App("fence-stream", broker=BROKER_URL, autodiscover=False)
    app.flow_control.resume()
    channel = app.channel()
    stream = app.stream(channel)
    for value in (1, 2, 3):
        await channel.send(value=value)
    batches: list[list[int]] = []

    async def first_batch() -> None:
        async for batch in take_batches(stream, 10, 0.2):
            batches.append([event.value for event in batch])
            break

    await asyncio.wait_for(first_batch(), 10)
    assert batches == [[1, 2, 3]]
    assert list(stream._processors) == []
    await stream.stop()


async def test_the_web_server_runs_on_the_replacement_runner() -> None:
    """faust's own runner keeps an idle connection for 75 s; the replacement closes it after
    its keep-alive time-out, which only happens if faust serves through it."""
    port = free_port()
    app = faust.App("fence-web", broker=BROKER_URL, autodiscover=False,
                    web_port=port, web_bind="127.0.0.1", web_host="127.0.0.1")
    runner = AppRunner(app.web.web_app, access_log=None, keepalive_timeout=0.3)
    replace_web_runner(app, runner)
    await app.web.start_server()
    try:
        assert runner.server is not None  # set up by faust's start_server
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert await asyncio.wait_for(reader.read(1), 5) == b""  # closed by the server
        finally:
            writer.close()
    finally:
        await app.web.stop_server()


async def test_the_app_builds_idempotent_producers() -> None:
    app = SelfcareApp("fence-producer", broker=BROKER_URL, autodiscover=False)
    assert isinstance(app.transport, IdempotentTransport)
    assert isinstance(app.producer_transport, IdempotentTransport)
    assert isinstance(app.producer, IdempotentProducer)
    client = app.producer._new_producer()  # the aiokafka producer faust would start
    assert client._txn_manager is not None  # aiokafka keeps one only for idempotent producers
    assert faust.App("plain", broker=BROKER_URL).producer._new_producer()._txn_manager is None


async def test_the_apps_kafka_producer_is_the_started_one_and_sends_batches(
        kafka_bootstrap: str, topic_prefix: str) -> None:
    """``kafka_producer`` gives the aiokafka producer faust started (the same one at every call),
    and its batch API writes to the broker."""
    host, port = kafka_bootstrap.split(",")[0].split(":")
    app = SelfcareApp("fence-kafka-producer", broker=f"kafka://{host}:{port}", autodiscover=False)
    await app.producer.start()
    try:
        producer = kafka_producer(app)
        assert isinstance(producer, AIOKafkaProducer)
        assert kafka_producer(app) is producer
        topic = topic_prefix + CODE_REQUESTED
        await producer.partitions_for(topic)
        batch = producer.create_batch()
        batch.append(key=b"k", value=b"batched", timestamp=None, headers=[])
        await (await producer.send_batch(batch, topic, partition=0))
    finally:
        await app.producer.stop()
    consumer = AIOKafkaConsumer(**aiokafka_kwargs(kafka_bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.seek_to_beginning()
        got = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    assert [m.value for batch_of in got.values() for m in batch_of] == [b"batched"]


async def test_consumer_metadata_and_offset_reset(kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = topic_prefix + CODE_REQUESTED
    await produce(kafka_bootstrap, topic, [(b"k", b"one")])

    fresh = AIOKafkaConsumer(**aiokafka_kwargs(kafka_bootstrap), enable_auto_commit=False)
    await fresh.start()
    try:
        await refresh_metadata(fresh)
        partitions = fresh.partitions_for_topic(topic)
        assert partitions
    finally:
        await fresh.stop()

    waiting = AIOKafkaConsumer(**aiokafka_kwargs(kafka_bootstrap), enable_auto_commit=False)
    await waiting.start()
    try:
        assert not waiting.partitions_for_topic(topic)
        await wait_on_metadata(waiting, topic)
        assert waiting.partitions_for_topic(topic) == partitions
    finally:
        await waiting.stop()

    positions = {}
    for policy in ("earliest", "latest"):
        consumer = AIOKafkaConsumer(**aiokafka_kwargs(kafka_bootstrap), enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        set_auto_offset_reset(consumer, policy)
        await consumer.start()
        try:
            await wait_on_metadata(consumer, topic)
            ends = {tp: end for tp, end in (await consumer.end_offsets(
                [TopicPartition(topic, p) for p in partitions])).items() if end > 0}
            written = next(iter(ends))
            consumer.assign([written])
            positions[policy] = await consumer.position(written)
        finally:
            await consumer.stop()
    assert positions == {"earliest": 0, "latest": 1}


def test_a_member_assignment_is_decoded_as_the_consumer_protocol_encodes_it() -> None:
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    encoded = ConsumerProtocolMemberAssignment(0, [("t.a", [0, 2]), ("t.b", [1])], b"").encode()
    assert sorted(faust_private.assigned_partitions("consumer", encoded)) == [
        ("t.a", 0), ("t.a", 2), ("t.b", 1)]
    assert faust_private.assigned_partitions("consumer", b"") == []
    assert faust_private.assigned_partitions("connect", encoded) == []
