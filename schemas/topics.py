"""The topic list (schemas/topics.yaml) as typed data.

Topic names are public (../DESIGN.md). ``TOPIC_PREFIX`` may namespace every topic of one
deployment (tests use it to run isolated copies of the workflow on one broker; services apply it
with ``CommonSettings.topic``); it is empty in production, so the names on the wire are exactly
the public ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

DLQ_SUFFIX = ".dlq"
SERVICES = ("registration", "recovery", "notifier")
DAY_MS = 86_400_000
# A compacted topic's record is compacted away within this once a later record (an erasure's
# tombstone) of its key exists: Kafka rolls the active segment and cleans it whatever its dirty
# ratio, so an erasure is complete on our topics within 24 h, not "once the cleaner gets to it".
MAX_COMPACTION_LAG_MS = DAY_MS

CONTRACT_LINKED = "crm.contract.linked.v1"
CONTRACT_TERMINATED = "crm.contract.terminated.v1"
CONTRACT_ERASED = "crm.contract.erased.v1"
CONTRACT_REJECTED = "selfcare.contract.rejected.v1"
ACCOUNT_CHANGED = "selfcare.account.changed.v1"
CODE_REQUESTED = "selfcare.code.requested.v1"
REQUESTS_BY_LOGIN = "selfcare.recovery.requests-by-login.v1"
CODE_ISSUED = "selfcare.code.issued.v1"
CODE_REJECTED = "selfcare.code.rejected.v1"
NOTIFICATION_STATUS = "selfcare.notification.status.v1"
PASSWORD_CHANGED = "selfcare.password.changed.v1"  # noqa: S105 (a topic name)


@dataclass(frozen=True, kw_only=True)
class TopicSpec:
    name: str
    event: str
    key: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    partitions: int
    replication_factor: int
    retention_ms: int
    cleanup_policy: str
    max_message_bytes: int
    dlq: bool
    internal: bool = False

    def configs(self) -> dict[str, str]:
        """Broker-side topic configs, as strings (what the admin API takes)."""
        configs = {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "max.message.bytes": str(self.max_message_bytes),
        }
        if "compact" in self.cleanup_policy.split(","):
            configs["max.compaction.lag.ms"] = str(MAX_COMPACTION_LAG_MS)
        return configs

    def dlq_spec(self) -> TopicSpec:
        """The dead-letter topic of this topic: the original records, unchanged."""
        return TopicSpec(
            name=self.name + DLQ_SUFFIX,
            event=self.event,
            key=self.key,
            producers=self.consumers,
            consumers=("ops",),
            partitions=1,
            replication_factor=self.replication_factor,
            retention_ms=self.retention_ms if self.retention_ms > 0 else 1209600000,
            cleanup_policy="delete",
            max_message_bytes=self.max_message_bytes,
            dlq=False,
            internal=self.internal,
        )


def _load_raw() -> dict[str, Any]:
    text = resources.files("schemas").joinpath("topics.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


@cache
def topic_specs() -> tuple[TopicSpec, ...]:
    """Every topic of DESIGN.md (without prefix), DLQs included, in file order."""
    raw = _load_raw()
    defaults = raw["defaults"]
    specs: list[TopicSpec] = []
    for item in raw["topics"]:
        spec = TopicSpec(
            name=item["name"],
            event=item["event"],
            key=item["key"],
            producers=tuple(item["producers"]),
            consumers=tuple(item["consumers"]),
            partitions=int(item.get("partitions", defaults["partitions"])),
            replication_factor=int(
                item.get("replication_factor", defaults["replication_factor"])
            ),
            retention_ms=int(item["retention_ms"]),
            cleanup_policy=item["cleanup_policy"],
            max_message_bytes=int(item.get("max_message_bytes", defaults["max_message_bytes"])),
            dlq=bool(item["dlq"]),
            internal=bool(item.get("internal", False)),
        )
        specs.append(spec)
        if spec.dlq:
            specs.append(spec.dlq_spec())
    return tuple(specs)


def longest_inbound_retention_days() -> int:
    """The longest retention, in whole days, of a topic that a service consumes and that ages out
    (compacted topics keep their records for good): a redelivered event older than this cannot
    come back, so a ``processed_events`` id kept that long meets every redelivery of its event."""
    longest = max(spec.retention_ms for spec in topic_specs()
                  if spec.retention_ms > 0 and set(spec.consumers) & set(SERVICES))
    return -(-longest // DAY_MS)


def dlq_of(name: str) -> str:
    return name + DLQ_SUFFIX
