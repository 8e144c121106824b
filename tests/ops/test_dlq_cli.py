"""``selfcare-ops dlq`` and ``tail`` against the real broker: what they refuse, and topics whose
records retention deleted."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from typer.testing import CliRunner

from schemas.topics import ACCOUNT_CHANGED, CONTRACT_LINKED, CONTRACT_TERMINATED, dlq_of
from services.ops.cli import app
from tests.support.kafka import Consumed, produce, read_all

pytestmark = pytest.mark.kafka
runner = CliRunner()


def dead_letter(original: str, key: bytes, value: bytes | None, at: Consumed | None) -> tuple[object, ...]:
    """A dead letter of a record of ``original`` (at ``at``, or without its place)."""
    headers = [("dlq_original_topic", original.encode()), ("dlq_error_class", b"processing_error")]
    if at is not None:
        headers += [("dlq_original_partition", str(at.partition).encode()),
                    ("dlq_original_offset", str(at.offset).encode())]
    return key, value, headers


@pytest.mark.timeout(60)
def test_dlq_list_ends_on_a_topic_whose_records_were_all_deleted(kafka_bootstrap: str, prefix: str) -> None:
    topic = prefix + dlq_of(CONTRACT_LINKED)
    asyncio.run(produce(kafka_bootstrap, topic, [(b"77-1", b"{}")]))

    async def delete() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(before_offset=1)})
        finally:
            await admin.close()

    asyncio.run(delete())  # as retention would: first offset == end offset == 1
    started = time.monotonic()
    result = runner.invoke(app, ["dlq", "list", dlq_of(CONTRACT_LINKED)])
    assert result.exit_code == 0, result.output
    assert result.output == ""
    assert time.monotonic() - started < 15
    sizes = runner.invoke(app, ["dlq", "list"]).output
    assert [line.split()[-1] for line in sizes.splitlines() if line.startswith(topic + " ")] == ["0"]


def test_replay_refuses_to_supersede_a_later_record_of_the_key_on_a_compacted_topic(
    kafka_bootstrap: str, prefix: str
) -> None:
    original, dlq = prefix + ACCOUNT_CHANGED, prefix + dlq_of(ACCOUNT_CHANGED)
    # account A: version 3 was dead-lettered, then A was erased; account B: version 2 was
    # dead-lettered and is still its last record
    asyncio.run(produce(kafka_bootstrap, original, [
        (b"A", b'{"v": 3}'), (b"A", None), (b"B", b'{"v": 1}'), (b"B", b'{"v": 2}')]))
    on_topic = asyncio.run(read_all(kafka_bootstrap, original, until=lambda got: len(got) == 4))
    a3 = next(r for r in on_topic if r.key == b"A" and r.value)
    tombstone = next(r for r in on_topic if r.key == b"A" and r.value is None)
    b2 = next(r for r in on_topic if r.value == b'{"v": 2}')
    asyncio.run(produce(kafka_bootstrap, dlq, [
        dead_letter(original, b"A", b'{"v": 3}', a3),   # offset 0
        dead_letter(original, b"B", b'{"v": 2}', b2),   # offset 1
        dead_letter(original, b"B", b'{"v": 2}', None),  # offset 2: where it came from is unknown
    ]))

    for force in ([], ["--force"]):
        refused = runner.invoke(app, ["dlq", "replay", dlq_of(ACCOUNT_CHANGED), "0", *force])
        assert refused.exit_code == 2, refused.output
        assert (f"{original} is compacted and holds a tombstone (an erasure) of the same key at "
                f"partition {tombstone.partition} offset {tombstone.offset}, after the original's "
                f"offset {a3.offset}") in refused.output
        assert "the replay would supersede it" in refused.output
    unknown = runner.invoke(app, ["dlq", "replay", dlq_of(ACCOUNT_CHANGED), "2", "--force"])
    assert unknown.exit_code == 2 and "no dlq_original_partition/offset" in unknown.output

    first = runner.invoke(app, ["dlq", "replay", dlq_of(ACCOUNT_CHANGED), "1"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["dlq", "replay", dlq_of(ACCOUNT_CHANGED), "1"])
    assert again.exit_code == 2 and "already replayed" in again.output
    forced = runner.invoke(app, ["dlq", "replay", dlq_of(ACCOUNT_CHANGED), "1", "--force"])
    assert forced.exit_code == 0, forced.output  # its own earlier replay supersedes nothing
    after = asyncio.run(read_all(kafka_bootstrap, original))
    assert [r.key for r in after].count(b"A") == 2 and [r.key for r in after].count(b"B") == 4


def test_replay_refuses_a_dead_letter_whose_original_compaction_removed(
    kafka_bootstrap: str, prefix: str
) -> None:
    """Account A's version 3 was dead-lettered, then A was erased; compaction dropped the record
    under the tombstone, and ``delete.retention.ms`` later the tombstone too. Nothing of A is
    left to show that a replay would supersede anything, yet it would bring the erased
    subscriber back for good: refused, even with --force."""
    original, dlq = prefix + ACCOUNT_CHANGED, prefix + dlq_of(ACCOUNT_CHANGED)
    asyncio.run(produce(kafka_bootstrap, original, [(b"A", b'{"v": 3}'), (b"A", None)]))
    on_topic = asyncio.run(read_all(kafka_bootstrap, original, until=lambda got: len(got) == 2))
    a3, tombstone = on_topic
    asyncio.run(produce(kafka_bootstrap, dlq, [dead_letter(original, b"A", b'{"v": 3}', a3)]))
    asyncio.run(remove_records(kafka_bootstrap, original, tombstone.partition, tombstone.offset + 1))
    for force in ([], ["--force"]):
        refused = runner.invoke(app, ["dlq", "replay", dlq_of(ACCOUNT_CHANGED), "0", *force])
        assert refused.exit_code == 2, refused.output
        assert (f"{original} is compacted and no longer holds its original record (partition "
                f"{a3.partition} offset {a3.offset})") in refused.output
    assert asyncio.run(read_all(kafka_bootstrap, original)) == []


def test_a_forced_replay_again_stands_on_the_earlier_replay_once_the_original_is_compacted(
    kafka_bootstrap: str, prefix: str
) -> None:
    """Replayed once, then compaction drops the original under that replay (the same record of
    the key, later): the earlier replay stands for it, so --force may send it again."""
    original, dlq = prefix + ACCOUNT_CHANGED, prefix + dlq_of(ACCOUNT_CHANGED)
    asyncio.run(produce(kafka_bootstrap, original, [(b"B", b'{"v": 2}')]))
    [b2] = asyncio.run(read_all(kafka_bootstrap, original, until=lambda got: len(got) == 1))
    asyncio.run(produce(kafka_bootstrap, dlq, [dead_letter(original, b"B", b'{"v": 2}', b2)]))
    first = runner.invoke(app, ["dlq", "replay", dlq_of(ACCOUNT_CHANGED), "0"])
    assert first.exit_code == 0, first.output
    asyncio.run(remove_records(kafka_bootstrap, original, b2.partition, b2.offset + 1))
    forced = runner.invoke(app, ["dlq", "replay", dlq_of(ACCOUNT_CHANGED), "0", "--force"])
    assert forced.exit_code == 0, forced.output
    assert [r.value for r in asyncio.run(read_all(kafka_bootstrap, original))] == [b'{"v": 2}'] * 2


async def remove_records(bootstrap: str, topic: str, partition: int, before: int) -> None:
    """What compaction and then the tombstone's expiry do to a key whose last record was a
    tombstone (the broker refuses to delete records of a compacted topic, so it is made a
    deleting one for the moment)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)

    async def cleanup(policy: str) -> None:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                  configs={"cleanup.policy": policy})])

    await admin.start()
    try:
        await cleanup("delete")
        await admin.delete_records({TopicPartition(topic, partition):
                                    RecordsToDelete(before_offset=before)})
        await cleanup("compact")
    finally:
        await admin.close()


def test_replay_refuses_a_dead_letter_that_names_another_original_topic(
    kafka_bootstrap: str, prefix: str
) -> None:
    elsewhere = prefix + ACCOUNT_CHANGED
    asyncio.run(produce(kafka_bootstrap, prefix + dlq_of(CONTRACT_TERMINATED),
                        [dead_letter(elsewhere, b"77-1", b"{}", None)]))
    for force in ([], ["--force"]):
        refused = runner.invoke(app, ["dlq", "replay", dlq_of(CONTRACT_TERMINATED), "0", *force])
        assert refused.exit_code == 2, refused.output
        assert f"names {elsewhere} as its original topic" in refused.output
    assert asyncio.run(read_all(kafka_bootstrap, elsewhere)) == []


@pytest.mark.timeout(60)
def test_show_prints_every_header_in_order_when_a_name_repeats(kafka_bootstrap: str, prefix: str) -> None:
    headers = [("dlq_original_topic", (prefix + CONTRACT_LINKED).encode()), ("trace", b"first"),
               ("trace", b"second"), ("empty", None), ("trace", b"\xff")]
    asyncio.run(produce(kafka_bootstrap, prefix + dlq_of(CONTRACT_LINKED), [(b"77-1", b"{}", headers)]))
    shown = runner.invoke(app, ["dlq", "show", dlq_of(CONTRACT_LINKED), "0"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert [line for line in lines if line.startswith(("trace:", "empty:"))] == [
        "trace: first", "trace: second", "empty: ", "trace: \ufffd"]
    assert f"dlq_original_topic: {prefix}{CONTRACT_LINKED}" in lines


@pytest.mark.timeout(120)
def test_missing_topics_and_partitions_are_answered_at_once(kafka_bootstrap: str, prefix: str) -> None:
    gone = prefix + "gone.v1"  # its dead-letter topic exists, the topic itself no longer does

    async def create_dlq_only() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(dlq_of(gone), num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()

    asyncio.run(create_dlq_only())
    asyncio.run(produce(kafka_bootstrap, dlq_of(gone), [dead_letter(gone, b"k", b"{}", None)]))
    asyncio.run(produce(kafka_bootstrap, prefix + CONTRACT_LINKED, [(b"77-1", b"not json")]))
    cases = {
        ("dlq", "show", "typo.dlq", "0"): f"no such topic: {prefix}typo.dlq",
        ("dlq", "show", dlq_of(CONTRACT_LINKED), "0", "--partition", "5"):
            f"no such partition: {prefix}{dlq_of(CONTRACT_LINKED)} has no partition 5",
        ("dlq", "list", "typo.dlq"): f"no such topic: {prefix}typo.dlq",
        ("dlq", "replay", "typo.dlq", "0"): f"no such topic: {prefix}typo.dlq",
        ("dlq", "replay", dlq_of(gone), "0"): f"no such topic: {gone}",
        ("tail", "typo", "--from-beginning", "--idle-exit-s", "10"): f"no such topic: {prefix}typo",
    }
    for args, answer in cases.items():
        started = time.monotonic()
        result = runner.invoke(app, list(args))
        assert (result.exit_code, result.output) == (2, answer + "\n"), args
        assert time.monotonic() - started < 15, args

    tailed = runner.invoke(app, ["tail", prefix + CONTRACT_LINKED, "--from-beginning", "--limit", "1",
                                 "--idle-exit-s", "10"])  # the name as the cluster has it
    assert tailed.exit_code == 0, tailed.output
    assert "@0 " in tailed.output
    assert "not shown" in tailed.output
