"""``Publisher.send_all`` on the real broker, record by record (a small call) and in one aiokafka
batch per partition (a large one): either way every record where its key puts it, in order,
whole, and a refused record an error."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from deploy.topics import admin_client
from schemas.topics import ACCOUNT_CHANGED, CONTRACT_REJECTED, topic_specs
from services.common.app import make_app
from services.common.codec import WireRecord
from services.common.metrics import ServiceMetrics
from services.common.publish import BATCH_FROM, Publisher
from tests.support.kafka import Consumed, read_all
from tests.support.probe_service import ProbeSettings

pytestmark = pytest.mark.kafka

BATCH_BYTES = 4096  # a few records per batch: a partition's records span several batches


def probe_app(kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              **options: Any) -> Any:
    """A service app on the test broker (its producer not started)."""
    monkeypatch.setenv("SELFCARE_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("SELFCARE_ENV", "local")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    return make_app(settings=ProbeSettings.from_env(), metrics=ServiceMetrics("probe-publisher"),
                    app_id=f"probe-publisher-{uuid.uuid4().hex[:8]}", **options)


@pytest.fixture
async def app(kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    app = probe_app(kafka_bootstrap, tmp_path, monkeypatch, producer_batch_bytes=BATCH_BYTES)
    await app.producer.start()
    yield app
    await app.producer.stop()


def partitions_of(name: str) -> int:
    return next(spec.partitions for spec in topic_specs() if spec.name == name)


def record(key: bytes | None, i: int, size: int = 300) -> WireRecord:
    return WireRecord(key=key, value=f"{i:08d}".encode() + b"x" * size,
                      headers=[("ce_id", str(i).encode()), ("content-type", b"application/json")])


def by_partition(consumed: list[Consumed]) -> dict[int, list[bytes | None]]:
    out: dict[int, list[bytes | None]] = {}
    for item in sorted(consumed, key=lambda c: (c.partition, c.offset)):
        out.setdefault(item.partition, []).append(item.value)
    return out


@pytest.mark.parametrize("count", [BATCH_FROM - 1, 400], ids=["one_by_one", "in_batches"])
async def test_every_record_lands_on_its_keys_partition_in_order_and_whole(
        app: Any, kafka_bootstrap: str, topic_prefix: str, count: int) -> None:
    keys = [str(uuid.uuid4()).encode() for _ in range(count // 8)]
    # each key several times, interleaved, on two topics; one record larger than a whole batch
    items: list[tuple[str, WireRecord]] = []
    for i in range(count):
        size = 3 * BATCH_BYTES if i == count // 2 else 300
        items.append((ACCOUNT_CHANGED if i % 3 else CONTRACT_REJECTED, record(keys[i % len(keys)], i, size)))
    await Publisher(app=app, topic_prefix=topic_prefix).send_all(items)

    for topic in (ACCOUNT_CHANGED, CONTRACT_REJECTED):
        sent = [r for t, r in items if t == topic]
        consumed = await read_all(kafka_bootstrap, topic_prefix + topic)
        count = partitions_of(topic)
        assert count > 1
        every = list(range(count))
        expected: dict[int, list[bytes | None]] = {}
        for r in sent:  # aiokafka's own default partitioner as the reference
            expected.setdefault(DefaultPartitioner()(r.key, every, every), []).append(r.value)
        assert by_partition(consumed) == expected
        assert {c.value: c.key for c in consumed} == {r.value: r.key for r in sent}
        assert {c.value: c.headers for c in consumed} == {
            r.value: {k: v.decode() for k, v in r.headers} for r in sent}


@pytest.mark.parametrize("count", [3, BATCH_FROM], ids=["one_by_one", "in_batches"])
async def test_records_without_a_key_are_all_written(
        app: Any, kafka_bootstrap: str, topic_prefix: str, count: int) -> None:
    """As dead letters of a record that had no key are (a compacted topic refuses them)."""
    sent = [record(None, i) for i in range(count)]
    await Publisher(app=app, topic_prefix=topic_prefix).send_all([(CONTRACT_REJECTED, r) for r in sent])
    consumed = await read_all(kafka_bootstrap, topic_prefix + CONTRACT_REJECTED)
    assert sorted(c.value for c in consumed if c.value) == sorted(r.value for r in sent if r.value)
    assert all(c.key is None for c in consumed)


@pytest.mark.parametrize("count", [3, BATCH_FROM], ids=["one_by_one", "in_batches"])
async def test_the_apps_own_partitioner_chooses(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        count: int) -> None:
    """Both ways ask the partitioner the app's producer was built with."""
    app = probe_app(kafka_bootstrap, tmp_path, monkeypatch)
    app.producer.partitioner = lambda key, every, available: every[-1]
    await app.producer.start()
    try:
        sent = [record(str(uuid.uuid4()).encode(), i) for i in range(count)]
        await Publisher(app=app, topic_prefix=topic_prefix).send_all([(CONTRACT_REJECTED, r) for r in sent])
    finally:
        await app.producer.stop()
    consumed = await read_all(kafka_bootstrap, topic_prefix + CONTRACT_REJECTED)
    assert {c.partition for c in consumed} == {partitions_of(CONTRACT_REJECTED) - 1}
    assert len(consumed) == count


@pytest.mark.parametrize("count", [1, BATCH_FROM], ids=["one_by_one", "in_batches"])
async def test_a_record_the_broker_refuses_is_an_error(
        app: Any, kafka_bootstrap: str, topic_prefix: str, count: int) -> None:
    """A topic that takes records of at most 1,000 bytes: a call with a larger one fails."""
    name = f"{topic_prefix}small-records"
    admin = admin_client(kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs={"max.message.bytes": "1000"})])
    finally:
        await admin.close()
    publisher = Publisher(app=app, topic_prefix=topic_prefix)
    await publisher.send_all([("small-records", record(b"k", 1, size=100))])
    with pytest.raises(KafkaError):
        await publisher.send_all([("small-records", record(b"k", 2, size=5000))] * count)
    consumed = await read_all(kafka_bootstrap, name)
    assert [c.value for c in consumed] == [record(b"k", 1, size=100).value]
