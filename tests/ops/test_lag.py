"""``selfcare-ops lag`` against the real broker: a group that consumed part of a topic."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from typer.testing import CliRunner

from schemas.topics import CODE_ISSUED
from services.ops import lag as group_lag
from services.ops.cli import app
from tests.support.kafka import create_topics, new_prefix

pytestmark = pytest.mark.kafka
runner = CliRunner()


async def _produce(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, count in per_partition.items():
            for i in range(count):
                await producer.send_and_wait(topic, f"r{i}".encode(), key=f"k{i}".encode(),
                                             partition=partition)  # a compacted topic: keyed
    finally:
        await producer.stop()


async def _consume_and_commit(bootstrap: str, topic: str, group: str, take: dict[int, int]) -> None:
    """Read ``take[p]`` records of partition p as ``group`` and commit after the last one read."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                         auto_offset_reset="earliest")
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in take]
        c.assign(tps)
        read: dict[int, int] = {p: 0 for p in take}
        deadline = asyncio.get_running_loop().time() + 20
        while any(read[p] < n for p, n in take.items()):
            assert asyncio.get_running_loop().time() < deadline, read
            batch = await c.getmany(timeout_ms=500)
            for tp, msgs in batch.items():
                for m in msgs:
                    if read[tp.partition] < take[tp.partition]:
                        read[tp.partition] = m.offset + 1
        await c.commit({TopicPartition(topic, p): OffsetAndMetadata(n, "") for p, n in read.items()})
    finally:
        await c.stop()


@pytest.fixture
def setup(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    prefix = new_prefix()
    asyncio.run(create_topics(kafka_bootstrap, prefix))
    topic = prefix + CODE_ISSUED
    asyncio.run(_produce(kafka_bootstrap, topic, {0: 5, 1: 3, 2: 2}))
    # the notifier's group read 4 of 5 records on p0, 1 of 3 on p1, both of p2
    asyncio.run(_consume_and_commit(kafka_bootstrap, topic, f"{prefix}selfcare-notifier", {0: 4, 1: 1, 2: 2}))
    # an ops reader's group is left out by default
    asyncio.run(_consume_and_commit(kafka_bootstrap, topic, f"{prefix}selfcare-ops-tail", {0: 1}))
    monkeypatch.setenv("TOPIC_PREFIX", prefix)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    return prefix, topic


def test_lag_is_end_minus_committed_per_partition(kafka_bootstrap: str, setup: tuple[str, str]) -> None:
    prefix, topic = setup
    group = f"{prefix}selfcare-notifier"
    rows = asyncio.run(group_lag.lag(kafka_bootstrap, [group]))
    got = {(r.topic, r.partition): (r.committed, r.end, r.lag) for r in rows}
    assert got == {(topic, 0): (4, 5, 1), (topic, 1): (1, 3, 2), (topic, 2): (2, 2, 0),
                   (topic, 3): (None, 0, 0)}  # never committed on (and empty)


def test_cli_prints_every_partition_and_the_total(setup: tuple[str, str]) -> None:
    prefix, topic = setup
    result = runner.invoke(app, ["lag"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["GROUP", "TOPIC", "PART", "COMMITTED", "END", "LAG"]
    rows = [line.split() for line in lines[1:] if line.startswith(prefix) and topic in line]
    assert rows == [
        [f"{prefix}selfcare-notifier", topic, "0", "4", "5", "1"],
        [f"{prefix}selfcare-notifier", topic, "1", "1", "3", "2"],
        [f"{prefix}selfcare-notifier", topic, "2", "2", "2", "0"],
        [f"{prefix}selfcare-notifier", topic, "3", "-", "0", "0"],
    ]
    assert f"{prefix}selfcare-notifier: 3 records behind" in result.output
    assert "selfcare-ops-tail" not in result.output


def test_max_lag_fails_only_when_a_partition_is_further_behind(setup: tuple[str, str]) -> None:
    prefix, _ = setup
    group = f"{prefix}selfcare-notifier"
    assert runner.invoke(app, ["lag", "--group", group, "--max-lag", "2"]).exit_code == 0
    assert runner.invoke(app, ["lag", "--group", group, "--max-lag", "1"]).exit_code == 1
    ops = runner.invoke(app, ["lag", "--group", f"{prefix}selfcare-ops-tail"])
    assert ops.exit_code == 0, ops.output
    assert ops.output.splitlines()[1].split()[2:] == ["0", "1", "5", "4"]


def test_a_group_without_commits_is_reported(setup: tuple[str, str]) -> None:
    prefix, _ = setup
    result = runner.invoke(app, ["lag", "--group", f"{prefix}selfcare-nobody"])
    assert result.exit_code == 1
    assert "no committed offsets" in result.output


def test_records_on_a_partition_never_committed_on_count_and_fail_max_lag(
    kafka_bootstrap: str, setup: tuple[str, str]
) -> None:
    prefix, topic = setup
    group = f"{prefix}selfcare-notifier"
    assert runner.invoke(app, ["lag", "--group", group, "--max-lag", "2"]).exit_code == 0
    asyncio.run(_produce(kafka_bootstrap, topic, {3: 3}))  # the group never read partition 3
    result = runner.invoke(app, ["lag", "--group", group, "--max-lag", "2"])
    assert result.exit_code == 1, result.output
    assert [group, topic, "3", "-", "3", "3"] in [line.split() for line in result.output.splitlines()]
    assert f"{group}: 6 records behind" in result.output


def test_a_group_with_a_member_but_no_commits_counts_from_the_first_offset(
    kafka_bootstrap: str, setup: tuple[str, str]
) -> None:
    prefix, topic = setup
    group = f"{prefix}selfcare-recovery"

    async def check_while_a_member() -> list[group_lag.PartitionLag]:
        c = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="latest")
        await c.start()
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while not c.assignment():  # joined and assigned; it reads nothing and commits nothing
                assert asyncio.get_running_loop().time() < deadline
                await c.getmany(timeout_ms=200)
            return await group_lag.lag(kafka_bootstrap, [group])
        finally:
            await c.stop()

    rows = asyncio.run(check_while_a_member())
    got = {(r.topic, r.partition): (r.committed, r.end, r.lag) for r in rows}
    assert got == {(topic, 0): (None, 5, 5), (topic, 1): (None, 3, 3), (topic, 2): (None, 2, 2),
                   (topic, 3): (None, 0, 0)}


def test_max_lag_fails_for_a_group_whose_lag_is_unknown(setup: tuple[str, str]) -> None:
    prefix, _ = setup
    result = runner.invoke(app, ["lag", "--group", f"{prefix}selfcare-notifier",
                                 "--group", f"{prefix}selfcare-nobody", "--max-lag", "5"])
    assert result.exit_code == 1, result.output
    assert f"{prefix}selfcare-nobody: no committed offsets and no members" in result.output
