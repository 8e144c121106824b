"""The Kafka cluster as Strimzi resources: ``Kafka``, its ``KafkaNodePool``, one ``KafkaTopic`` per
topic of ``schemas/topics.yaml`` (dead-letter topics included) and one ``KafkaUser`` per principal
of :func:`deploy.access.grants`.

Production topics differ from the local list in one respect only: replication factor 3 with
``min.insync.replicas=2`` (a write is acknowledged by two brokers; one broker may be down).
"""

from __future__ import annotations

from typing import Any

from deploy.access import Grants, grants
from schemas.topics import TopicSpec, topic_specs

API = "kafka.strimzi.io/v1"
CLUSTER = "selfcare-kafka"
BROKERS = 3
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2
TLS_PORT = 9093  # mutual TLS (client certificates)
SCRAM_PORT = 9094  # TLS + SASL SCRAM-SHA-512: what the services use
BOOTSTRAP = f"{CLUSTER}-kafka-bootstrap:{SCRAM_PORT}"
CA_SECRET = f"{CLUSTER}-cluster-ca-cert"  # made by the operator; key ca.crt

Manifest = dict[str, Any]


def _meta(name: str, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = dict(labels)
    return meta


def kafka() -> Manifest:
    return {
        "apiVersion": API,
        "kind": "Kafka",
        "metadata": _meta(CLUSTER),
        "spec": {
            "kafka": {
                "listeners": [
                    {"name": "tls", "port": TLS_PORT, "type": "internal", "tls": True,
                     "authentication": {"type": "tls"}},
                    {"name": "scram", "port": SCRAM_PORT, "type": "internal", "tls": True,
                     "authentication": {"type": "scram-sha-512"}},
                ],
                "authorization": {"type": "simple"},
                "config": {
                    "auto.create.topics.enable": False,
                    "default.replication.factor": REPLICATION_FACTOR,
                    "min.insync.replicas": MIN_INSYNC_REPLICAS,
                    "offsets.topic.replication.factor": REPLICATION_FACTOR,
                    "transaction.state.log.replication.factor": REPLICATION_FACTOR,
                    "transaction.state.log.min.isr": MIN_INSYNC_REPLICAS,
                },
            },
            "entityOperator": {"topicOperator": {}, "userOperator": {}},
            # consumer lag in records (kafka_consumergroup_lag) for the alert rules
            "kafkaExporter": {"groupRegex": "selfcare-.*", "topicRegex": ".*"},
        },
    }


def node_pool() -> Manifest:
    return {
        "apiVersion": API,
        "kind": "KafkaNodePool",
        "metadata": _meta("dual-role", **{"strimzi.io/cluster": CLUSTER}),
        "spec": {
            "replicas": BROKERS,
            "roles": ["controller", "broker"],
            "storage": {
                "type": "jbod",
                "volumes": [{"id": 0, "type": "persistent-claim", "size": "100Gi",
                             "deleteClaim": False, "kraftMetadata": "shared"}],
            },
            "resources": {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "4Gi"}},
        },
    }


def kafka_topic(spec: TopicSpec) -> Manifest:
    config: dict[str, Any] = {k: v for k, v in spec.configs().items()}
    config["retention.ms"] = spec.retention_ms
    config["max.message.bytes"] = spec.max_message_bytes
    if "max.compaction.lag.ms" in config:
        config["max.compaction.lag.ms"] = int(config["max.compaction.lag.ms"])
    config["min.insync.replicas"] = MIN_INSYNC_REPLICAS
    return {
        "apiVersion": API,
        "kind": "KafkaTopic",
        "metadata": _meta(spec.name, **{"strimzi.io/cluster": CLUSTER}),
        "spec": {
            "topicName": spec.name,
            "partitions": spec.partitions,
            "replicas": spec.replication_factor,  # the topic list's (AsyncAPI says the same)
            "config": config,
        },
    }


def _acl(kind: str, name: str, operations: list[str], pattern: str = "literal") -> dict[str, Any]:
    return {"resource": {"type": kind, "name": name, "patternType": pattern},
            "operations": operations}


def acls(g: Grants) -> list[dict[str, Any]]:
    """A principal's grants as Strimzi ACL rules (Describe goes with every topic right)."""
    rules: list[dict[str, Any]] = []
    for topic in sorted(g.read | g.write | g.describe_configs):
        ops = ["Describe"]
        ops += ["Read"] if topic in g.read else []
        ops += ["Write"] if topic in g.write else []
        ops += ["DescribeConfigs"] if topic in g.describe_configs else []
        rules.append(_acl("topic", topic, ops))
    for group in sorted(g.groups):
        rules.append(_acl("group", group, ["Read", "Describe"]))
    for group_prefix in sorted(g.group_prefixes):
        rules.append(_acl("group", group_prefix, ["Read", "Describe"], "prefix"))
    for group in sorted(g.describe_groups - g.groups):
        rules.append(_acl("group", group, ["Describe"]))
    return rules


def kafka_user(g: Grants) -> Manifest:
    return {
        "apiVersion": API,
        "kind": "KafkaUser",
        "metadata": _meta(g.principal, **{"strimzi.io/cluster": CLUSTER}),
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {"type": "simple", "acls": acls(g)},
        },
    }


def cluster() -> list[Manifest]:
    return [kafka(), node_pool()]


def topics(specs: tuple[TopicSpec, ...] | None = None) -> list[Manifest]:
    return [kafka_topic(s) for s in (topic_specs() if specs is None else specs)]


def users(specs: tuple[TopicSpec, ...] | None = None) -> list[Manifest]:
    return [kafka_user(g) for g in grants(specs).values()]
