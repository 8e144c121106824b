"""Who may touch which topic and consumer group, derived from ``schemas/topics.yaml``.

One principal per service (``registration``, ``recovery``, ``notifier``), one for ``ops``, and
one per outside producer named in the topic list (``crm``, ``portal``). The rules:

- a service reads the topics it consumes, writes the topics it produces, and writes the
  ``.dlq`` of every topic it consumes (it dead-letters there) — but never reads a ``.dlq``;
- a service uses exactly one consumer group, its faust app id ``selfcare-<service>``;
- ``ops`` reads every topic (``.dlq`` and inbound ones included: ops only), writes the topics
  that ``selfcare-ops dlq replay`` puts dead letters back on, uses groups ``selfcare-ops*``,
  may read every topic's configuration (``selfcare-ops topics describe``: DescribeConfigs), and
  may see how far the services' groups are behind (``selfcare-ops lag``: Describe, never Read —
  it cannot commit for them);
- an outside principal (``crm``, ``portal``) writes the topics it produces and reads what the
  topic list names it as a consumer of; one that reads may use the consumer groups whose names
  begin ``<principal>-`` (:func:`outside_group_prefix`, e.g. ``portal-rejections``): its own,
  outside the ``selfcare-`` groups that the lag alert and ``selfcare-ops lag`` watch.

Both renderings of these grants — the ACLs of the local secured broker (``deploy/broker.py``)
and Strimzi's ``KafkaUser`` resources (``deploy/k8s``) — come from :func:`grants`, so neither
can drift from the topic list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.topics import DLQ_SUFFIX, SERVICES, TopicSpec, topic_specs

OPS = "ops"


@dataclass(frozen=True)
class Grants:
    """What one principal may do. Topic names are physical (prefix applied)."""

    principal: str
    read: frozenset[str] = field(default_factory=frozenset)
    write: frozenset[str] = field(default_factory=frozenset)
    groups: frozenset[str] = field(default_factory=frozenset)
    group_prefixes: frozenset[str] = field(default_factory=frozenset)
    # Describe only (no Read): the group's offsets and members can be seen, not committed
    describe_groups: frozenset[str] = field(default_factory=frozenset)
    # topics whose configuration may be read (DescribeConfigs; never AlterConfigs)
    describe_configs: frozenset[str] = field(default_factory=frozenset)


def group_of(service: str, prefix: str = "") -> str:
    """The consumer group of a service: its faust app id (``services/common/app.py``)."""
    return f"{prefix}selfcare-{service}"


def outside_group_prefix(principal: str, prefix: str = "") -> str:
    """The consumer groups an outside principal may use: any name beginning ``<principal>-``."""
    return f"{prefix}{principal}-"


def grants(specs: tuple[TopicSpec, ...] | None = None, *, prefix: str = "") -> dict[str, Grants]:
    """Every principal's grants, keyed by principal name, in a stable order."""
    specs = topic_specs() if specs is None else specs
    base = [s for s in specs if not s.name.endswith(DLQ_SUFFIX)]
    dlq_names = {s.name for s in specs if s.name.endswith(DLQ_SUFFIX)}
    outside = sorted({p for s in base for p in (*s.producers, *s.consumers)}
                     - set(SERVICES) - {OPS})
    read: dict[str, set[str]] = {}
    write: dict[str, set[str]] = {}
    for spec in base:
        for consumer in spec.consumers:
            read.setdefault(consumer, set()).add(spec.name)
            if consumer in SERVICES and spec.name + DLQ_SUFFIX in dlq_names:
                write.setdefault(consumer, set()).add(spec.name + DLQ_SUFFIX)
        for producer in spec.producers:
            write.setdefault(producer, set()).add(spec.name)
    result: dict[str, Grants] = {}
    for service in SERVICES:
        result[service] = Grants(
            principal=service,
            read=frozenset(prefix + t for t in read.get(service, ())),
            write=frozenset(prefix + t for t in write.get(service, ())),
            groups=frozenset({group_of(service, prefix)}),
        )
    replayable = {s.name for s in base if s.name + DLQ_SUFFIX in dlq_names}
    result[OPS] = Grants(
        principal=OPS,
        read=frozenset(prefix + s.name for s in specs),
        write=frozenset(prefix + t for t in replayable),
        group_prefixes=frozenset({f"{prefix}selfcare-ops"}),
        describe_groups=frozenset(group_of(s, prefix) for s in SERVICES),
        describe_configs=frozenset(prefix + s.name for s in specs),
    )
    for name in outside:
        reads = frozenset(prefix + t for t in read.get(name, ()))
        result[name] = Grants(
            principal=name,
            read=reads,
            write=frozenset(prefix + t for t in write.get(name, ())),
            # a consumer group commits its offsets: without one a reader could only assign
            group_prefixes=frozenset({outside_group_prefix(name, prefix)} if reads else ()),
        )
    return result
