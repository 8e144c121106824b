"""The whole workflow on a SASL_SSL broker (``deploy.broker start --secure``): every service
connects as its own SCRAM principal and may do only what the ACLs from ``deploy.access``
allow; the test acts as ``crm`` (ContractLinked), the portal (HTTP) and ``ops`` (reads).

The broker runs on its own ports (base 19292) under a temporary folder and is stopped at the
end of the module, also when a test fails."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import GroupAuthorizationFailedError, KafkaConnectionError, TopicAuthorizationFailedError
from typer.testing import CliRunner

from deploy import broker
from deploy import kafka_security as sec
from deploy.access import outside_group_prefix
from deploy.local_stack import LocalStack
from schemas.topics import (
    ACCOUNT_CHANGED,
    CODE_ISSUED,
    CODE_REJECTED,
    CONTRACT_LINKED,
    CONTRACT_REJECTED,
    NOTIFICATION_STATUS,
)
from services.common.kafka_config import KafkaSettings, aiokafka_kwargs
from services.ops.cli import app as ops_cli
from services.ops.kafka_read import consumer as consumer_of
from services.ops.kafka_read import partitions
from tests.e2e.test_workflow import PASSWORD, linked, post, sms_to, wait_for, wait_for_projection
from tests.support.kafka import create_topics, new_prefix, produce, read_all
from tests.support.workers import TEST_HASH_PEPPER, TEST_SECRET_KEYS, free_port

pytestmark = pytest.mark.cluster
BASE_PORT = 19292


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A secured single-node broker; yields (its kafka dir, a fresh topic prefix with ACLs)."""
    var_dir = tmp_path_factory.mktemp("secure-kafka")
    try:
        t0 = time.monotonic()
        broker.start(1, BASE_PORT, var_dir, secure=True)
        print(f"secure broker answered with its ACLs in {time.monotonic() - t0:.1f} s")
        kdir = var_dir / "kafka"
        prefix = new_prefix()
        broker.apply_acls(var_dir, prefix)
        asyncio.run(create_topics(sec.client_settings(kdir, sec.ADMIN), prefix))
        yield kdir, prefix
    finally:
        broker.stop(var_dir=var_dir)


def as_(kdir: Path, principal: str) -> KafkaSettings:
    return sec.client_settings(kdir, principal)


@pytest.fixture(scope="module")
def stack(secure: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    kdir, prefix = secure
    s = LocalStack(
        bootstrap=as_(kdir, sec.ADMIN).bootstrap_servers, var_dir=tmp_path_factory.mktemp("secure-e2e"),
        topic_prefix=prefix,
        ports={"registration": free_port(), "recovery": free_port(), "notifier": free_port()},
        extra_env={"SECRET_KEYS": TEST_SECRET_KEYS, "HASH_PEPPER": TEST_HASH_PEPPER,
                   "LIMIT_LOGIN_COOLDOWN_S": "1"},
        kafka_env={p: sec.client_env(kdir, p) for p in ("registration", "recovery", "notifier", "crm", "ops")},
    )
    s.start()
    try:
        yield s
    finally:
        s.stop()


async def test_the_workflow_runs_with_each_service_under_its_own_principal(stack: LocalStack) -> None:
    prefix = stack.topic_prefix
    await produce(stack.kafka("crm"), prefix + CONTRACT_LINKED, [
        (b"SEC-1", linked("SEC-1", "100000000901", "interactive", "+7 916 900-00-01", "sec@example.ru")),
    ])
    # registration → AccountChanged → recovery's projection; then Get code as the portal would
    try:
        changed = await read_all(stack.kafka("ops"), prefix + ACCOUNT_CHANGED, timeout_s=60,
                                 until=lambda got: len(got) >= 1)
    except TimeoutError:
        changed = []
    assert changed, "registration published no AccountChanged on the secured broker"
    # recovery has projected the account (its own metric): a request before that finds no login
    await asyncio.to_thread(wait_for_projection, stack, 1)
    status, _ = await post(stack, "/api/v1/code-requests", {"login": "8 916 900-00-01", "channel": "sms"})
    assert status == 202
    texts = await wait_for(lambda: sms_to(stack, "+79169000001"), timeout_s=60)
    password = PASSWORD.search(texts[-1]).group(1)  # type: ignore[union-attr]
    status, body = await post(stack, "/api/v1/login", {"login": "+79169000001", "password": password})
    assert status == 200 and "account_id" in json.loads(body)
    # the notifier's status record, read by ops
    sent = await read_all(stack.kafka("ops"), prefix + NOTIFICATION_STATUS, timeout_s=30,
                          until=lambda got: any(b'"sent"' in (r.value or b"") for r in got))
    assert sent
    # the ops CLI under the ops principal, from the KAFKA_* environment alone
    env = {**sec.client_env(Path(stack.kafka("ops").ssl_ca_file or "").parent.parent, "ops"),
           "TOPIC_PREFIX": prefix}
    result = await asyncio.to_thread(CliRunner().invoke, ops_cli, ["dlq", "list"], env=env)
    assert result.exit_code == 0, result.output
    assert f"{prefix}{CONTRACT_LINKED}.dlq" in result.output
    # the services' groups, seen by ops (Describe only: it may not commit for them)
    result = await asyncio.to_thread(CliRunner().invoke, ops_cli, ["lag"], env=env)
    assert result.exit_code == 0, result.output
    assert f"{prefix}selfcare-registration: " in result.output


async def test_registration_may_not_read_code_issued(secure: tuple[Path, str]) -> None:
    kdir, prefix = secure
    # the same principal reads its own input: the refusal below is the ACL, not the connection
    await produce(as_(kdir, "crm"), prefix + CONTRACT_LINKED, [(b"k", b"{}")])
    own = await read_all(as_(kdir, "registration"), prefix + CONTRACT_LINKED, idle_s=0.5)
    assert own
    for who, allowed in (("ops", True), ("registration", False)):
        consumer = consumer_of(as_(kdir, who))
        await consumer.start()
        try:
            if allowed:  # the topic is there: ops may read it
                assert await partitions(consumer, prefix + CODE_ISSUED)
            else:
                with pytest.raises(TopicAuthorizationFailedError):
                    await partitions(consumer, prefix + CODE_ISSUED)
        finally:
            await consumer.stop()


def group_consumer(kafka: KafkaSettings, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(topic, **aiokafka_kwargs(kafka), group_id=group, enable_auto_commit=False,
                            auto_offset_reset="earliest", request_timeout_ms=10000)


@pytest.mark.parametrize(("who", "topic", "writer"), [("portal", CODE_REJECTED, "recovery"),
                                                      ("crm", CONTRACT_REJECTED, "registration")])
async def test_an_outside_reader_consumes_in_a_group_of_its_own(
    secure: tuple[Path, str], who: str, topic: str, writer: str,
) -> None:
    kdir, prefix = secure
    await produce(as_(kdir, writer), prefix + topic, [(b"k", b"{}")])
    consumer = group_consumer(as_(kdir, who), prefix + topic, outside_group_prefix(who, prefix) + "rejections")
    await consumer.start()
    try:
        got = []
        deadline = time.monotonic() + 60
        while not got and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            got = [m for msgs in batch.values() for m in msgs]
        assert got, f"{who} read nothing from {topic} in its group"
        await consumer.commit()  # the group's offsets: Read on the group
        (tp,) = {(m.topic, m.partition) for m in got[:1]}
        assert await consumer.committed(TopicPartition(*tp)) == got[0].offset + 1
    finally:
        await consumer.stop()
    # the same topic in a group that is not its own (a service's) is refused
    other = group_consumer(as_(kdir, who), prefix + topic, f"{prefix}selfcare-registration")
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            await other.start()  # joins the group (refused here, or at the first fetch)
            await other.getmany(timeout_ms=10000)
    finally:
        await other.stop()


async def test_ops_describes_the_topics_configuration(secure: tuple[Path, str]) -> None:
    # describe_configs needs DescribeConfigs on each topic (Describe alone gets an error per topic)
    kdir, prefix = secure
    env = {**sec.client_env(kdir, "ops"), "TOPIC_PREFIX": prefix}
    result = await asyncio.to_thread(CliRunner().invoke, ops_cli, ["topics", "describe"], env=env)
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith(f"{prefix}{CONTRACT_LINKED} ")]
    assert "cleanup.policy=delete retention.ms=604800000" in line and "MISSING" not in result.output
    # registration may see its topics but not their settings
    result = await asyncio.to_thread(CliRunner().invoke, ops_cli, ["topics", "describe"],
                                     env={**sec.client_env(kdir, "registration"), "TOPIC_PREFIX": prefix})
    assert result.exit_code != 0 and "describing configs failed" in str(result.exception)


async def test_notifier_may_not_produce_account_changed(secure: tuple[Path, str]) -> None:
    kdir, prefix = secure
    producer = AIOKafkaProducer(**aiokafka_kwargs(as_(kdir, "notifier")), acks="all",
                                enable_idempotence=True, request_timeout_ms=10000)
    await producer.start()
    try:
        # its own output topic is writable
        await producer.send_and_wait(prefix + NOTIFICATION_STATUS, b"{}", key=b"k")
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(prefix + ACCOUNT_CHANGED, b"{}", key=b"k")
    finally:
        await producer.stop()


async def test_a_wrong_password_or_plaintext_gets_nothing(secure: tuple[Path, str]) -> None:
    kdir, _ = secure
    good = as_(kdir, "ops")
    wrong = KafkaSettings(bootstrap_servers=good.bootstrap_servers, security_protocol="SASL_SSL",
                          sasl_username="ops", sasl_password="not-the-password",
                          ssl_ca_file=good.ssl_ca_file)
    for settings in (wrong, KafkaSettings(bootstrap_servers=good.bootstrap_servers)):
        consumer = AIOKafkaConsumer(**aiokafka_kwargs(settings), request_timeout_ms=5000)
        with pytest.raises(KafkaConnectionError):
            await consumer.start()
        await consumer.stop()
