"""Apply the declarative topic list (schemas/topics.yaml) to a broker, idempotently.

``python -m deploy.topics apply`` creates missing topics, raises partition counts that are
lower than declared, and sets the declared configs; applying twice changes nothing.
``python -m deploy.topics describe`` prints what the broker has.

Replication: by default a topic gets as many replicas as the cluster has brokers, at most 3,
and ``min.insync.replicas`` 2 once it has 3 replicas (1 below that), so with the producers'
``acks=all`` a write acknowledged on a three-broker cluster is on two brokers at least.
``--replication-factor`` overrides the count. The connection comes from
``KAFKA_BOOTSTRAP_SERVERS`` and the ``KAFKA_*`` security settings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from schemas.topics import TopicSpec, topic_specs
from services.common.errors import ConfigError
from services.common.kafka_config import KafkaSettings, aiokafka_kwargs


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    configs: dict[str, str]
    replication_factor: int = 1


def min_insync_replicas(replication_factor: int) -> int:
    """2 of 3 (or more) replicas must have a write before ``acks=all`` answers; 1 below 3, so
    that a smaller cluster stays writable."""
    return 2 if replication_factor >= 3 else 1


def desired_configs(spec: TopicSpec, replication_factor: int) -> dict[str, str]:
    return {**spec.configs(), "min.insync.replicas": str(min_insync_replicas(replication_factor))}


async def describe(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, TopicState]:
    existing = set(await admin.list_topics())
    names = [n for n in names if n in existing]
    if not names:
        return {}
    described = await admin.describe_topics(names)
    # a topic created a moment ago (by another applier) is listed before its partitions are, and
    # each describe may ask another broker: without partitions its replication factor is unknown,
    # and reading it as 1 would set min.insync.replicas to 1 on a topic with 3 replicas
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while any(not t["partitions"] for t in described):
        if loop.time() > deadline:
            raise TimeoutError(f"topics without partitions after 30 s: {names}")
        await asyncio.sleep(0.1)
        described = await admin.describe_topics(names)
    partitions = {t["topic"]: len(t["partitions"]) for t in described}
    replicas = {t["topic"]: min(len(p["replicas"]) for p in t["partitions"]) for t in described}
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    # the broker asked for the configs may not know a topic that another broker just reported
    # with its partitions (error 3, unknown topic): asked again until the same deadline
    responses = await admin.describe_configs(resources)
    while _unknown_topic(responses) and loop.time() < deadline:
        await asyncio.sleep(0.1)
        responses = await admin.describe_configs(resources)
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        # an error (e.g. no DescribeConfigs right) comes back per resource, not raised: without
        # this the topic would look as if it had none of its settings
        _raise_for_errors("describing configs", response)
        for result in response.resources:
            _err, _msg, _rtype, rname, entries = result[:5]
            configs[rname] = {e[0]: e[1] for e in entries}
    return {n: TopicState(n, partitions[n], configs.get(n, {}), replicas[n]) for n in names}


UNKNOWN_TOPIC_OR_PARTITION = 3


def _unknown_topic(responses: Any) -> bool:
    return any(result[0] == UNKNOWN_TOPIC_OR_PARTITION
               for response in responses for result in response.resources)


def _same(key: str, have: str | None, want: str) -> bool:
    """Is the broker's value the declared one? ``cleanup.policy`` is a list: its order does not
    matter (``compact,delete`` is ``delete,compact``)."""
    if key == "cleanup.policy" and have is not None:
        return sorted(p.strip() for p in have.split(",")) == sorted(want.split(","))
    return have == want


def _raise_for_errors(what: str, responses: Any) -> None:
    """AlterConfigs and DescribeConfigs answer each resource with an error code instead of
    raising."""
    for response in responses if isinstance(responses, list) else [responses]:
        for result in response.resources:
            error_code, message, name = result[0], result[1], result[3]
            if error_code:
                raise RuntimeError(f"{name}: {what} failed ({error_code}: {message})")


def admin_client(kafka: KafkaSettings | str, **kwargs: object) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**aiokafka_kwargs(kafka), **kwargs)  # type: ignore[arg-type]


async def apply(
    bootstrap: KafkaSettings | str, *, prefix: str = "", replication_factor: int = -1
) -> list[str]:
    """Make the broker match the list; returns a line per change (empty when nothing changed)."""
    specs = topic_specs()
    admin = admin_client(bootstrap, request_timeout_ms=30000)
    await admin.start()
    changes: list[str] = []
    try:
        if replication_factor <= 0:
            cluster = await admin.describe_cluster()
            replication_factor = min(3, len(cluster["brokers"]))
        current = await describe(admin, [prefix + s.name for s in specs])
        missing = [s for s in specs if prefix + s.name not in current]
        if missing:
            new = [_new_topic(s, prefix, replication_factor) for s in missing]
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another applier raced us; the next apply converges
            changes += [
                f"created {prefix + s.name} ({s.partitions} partitions, "
                f"{replication_factor} replicas)"
                for s in missing
            ]
            await _wait_for_leaders(admin, [prefix + s.name for s in missing])
        for spec in specs:
            state = current.get(prefix + spec.name)
            if state is None:
                continue
            name = prefix + spec.name
            if state.partitions < spec.partitions:
                await admin.create_partitions({name: NewPartitions(total_count=spec.partitions)})
                changes.append(f"{name}: partitions {state.partitions} -> {spec.partitions}")
            wanted = desired_configs(spec, state.replication_factor)
            drift = {k: v for k, v in wanted.items() if not _same(k, state.configs.get(k), v)}
            if drift:
                responses = await admin.alter_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, name, configs=wanted)]
                )
                _raise_for_errors("altering configs", responses)
                changes.append(f"{name}: configs {sorted(drift)}")
    finally:
        await admin.close()
    return changes


async def remove(bootstrap: KafkaSettings | str, *, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a benchmark's or a test's own set);
    returns their names. An empty prefix is refused: that would be the real topics."""
    if not prefix:
        raise ValueError("refusing to delete topics without a prefix")
    admin = admin_client(bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 30) -> None:
    """New topics take a moment to elect partition leaders; producers fail until they have."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        described = await admin.describe_topics(names)
        if all(
            t["error_code"] == 0 and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"])
            for t in described
        ):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"topics without leaders after {timeout_s}s")


def _new_topic(spec: TopicSpec, prefix: str, replication_factor: int) -> NewTopic:
    return NewTopic(
        name=prefix + spec.name,
        num_partitions=spec.partitions,
        replication_factor=replication_factor,
        topic_configs=desired_configs(spec, replication_factor),
    )


async def _describe_main(bootstrap: KafkaSettings | str, prefix: str) -> None:
    admin = admin_client(bootstrap)
    await admin.start()
    try:
        states = await describe(admin, [prefix + s.name for s in topic_specs()])
    finally:
        await admin.close()
    for spec in topic_specs():
        state = states.get(prefix + spec.name)
        if state is None:
            print(f"{prefix + spec.name:55} MISSING")
            continue
        cfg = state.configs
        print(
            f"{state.name:55} partitions={state.partitions} replicas={state.replication_factor} "
            f"min.insync.replicas={cfg.get('min.insync.replicas')} "
            f"cleanup.policy={cfg.get('cleanup.policy')} retention.ms={cfg.get('retention.ms')}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.topics")
    parser.add_argument("command", choices=["apply", "describe"])
    parser.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    parser.add_argument("--prefix", default=os.environ.get("TOPIC_PREFIX", ""))
    parser.add_argument(
        "--replication-factor", type=int, default=-1,
        help="-1 (default): 3, or the number of brokers when fewer",
    )
    args = parser.parse_args(argv)
    try:
        kafka = KafkaSettings.from_env({**os.environ, "KAFKA_BOOTSTRAP_SERVERS": args.bootstrap})
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "describe":
        asyncio.run(_describe_main(kafka, args.prefix))
        return 0
    changes = asyncio.run(apply(kafka, prefix=args.prefix,
                                replication_factor=args.replication_factor))
    print("\n".join(changes) if changes else "topics up to date: nothing changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
