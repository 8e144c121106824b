"""Rewinding the account topic before the worker starts, when the broker is not up yet: it is
waited for (services and brokers started together), within a bound."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import OffsetAndMetadata

from deploy.launch import free_port
from schemas.topics import ACCOUNT_CHANGED
from services.recovery.adapters.rewind import rewind_topic
from tests.support.kafka import create_topics, new_prefix


@contextlib.asynccontextmanager
async def late_listener(port: int, target: str, after_s: float) -> AsyncIterator[None]:
    """``port`` refuses connections for ``after_s``, then forwards each one to ``target``."""
    host, target_port = target.rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(target_port))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    servers: list[asyncio.Server] = []

    async def open_later() -> None:
        await asyncio.sleep(after_s)
        servers.append(await asyncio.start_server(forward, "127.0.0.1", port))

    opening = asyncio.ensure_future(open_later())
    try:
        yield
    finally:
        opening.cancel()
        for server in servers:
            server.close()


async def test_a_broker_that_answers_late_is_waited_for(kafka_bootstrap: str) -> None:
    prefix = new_prefix()
    await create_topics(kafka_bootstrap, prefix)
    topic, group = prefix + ACCOUNT_CHANGED, prefix + "selfcare-recovery"
    committer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group,
                                 enable_auto_commit=False)
    await committer.start()
    try:  # the group had read the topic before the database was wiped
        committer.assign([TopicPartition(topic, 0)])
        await committer.commit({TopicPartition(topic, 0): OffsetAndMetadata(5, "")})
    finally:
        await committer.stop()
    port = free_port()
    started = time.monotonic()
    async with late_listener(port, kafka_bootstrap, after_s=2.0):
        moved = await rewind_topic(bootstrap=f"127.0.0.1:{port}", group_id=group, topic=topic,
                                   wait_s=30)
    assert moved == [0] and time.monotonic() - started >= 2.0
    checker = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group,
                               enable_auto_commit=False)
    await checker.start()
    try:
        checker.assign([TopicPartition(topic, 0)])
        assert await checker.committed(TopicPartition(topic, 0)) == 0
    finally:
        await checker.stop()


async def test_a_broker_that_never_answers_fails_once_the_wait_is_over() -> None:
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError):
        await rewind_topic(bootstrap=f"127.0.0.1:{free_port()}", group_id="g", topic="t", wait_s=3)
    assert 2.0 <= time.monotonic() - started < 15
