"""The grants derived from schemas/topics.yaml: each principal gets exactly its topics and group."""

from __future__ import annotations

from deploy.access import OPS, SERVICES, grants, outside_group_prefix
from schemas.topics import topic_specs


def test_each_service_reads_what_it_consumes_and_never_a_dlq() -> None:
    g = grants()
    for spec in topic_specs():
        if spec.name.endswith(".dlq"):
            assert all(spec.name not in g[s].read for s in SERVICES), spec.name
            assert spec.name in g[OPS].read
            continue
        for service in SERVICES:
            assert (spec.name in g[service].read) == (service in spec.consumers), (service, spec.name)
            assert (spec.name in g[service].write) == (service in spec.producers), (service, spec.name)


def test_services_write_the_dlq_of_what_they_consume() -> None:
    g = grants()
    assert "crm.contract.linked.v1.dlq" in g["registration"].write
    assert "selfcare.code.issued.v1.dlq" in g["notifier"].write
    assert "selfcare.code.issued.v1.dlq" not in g["registration"].write


def test_examples_from_the_contract() -> None:
    g = grants()
    assert "selfcare.code.issued.v1" not in g["registration"].read
    assert "selfcare.account.changed.v1" not in g["notifier"].write
    assert "selfcare.code.requested.v1" in g["portal"].write
    assert "crm.contract.linked.v1" in g["crm"].write
    assert "crm.contract.linked.v1" not in g["recovery"].read


def test_groups_and_prefix() -> None:
    g = grants(prefix="t1-")
    assert g["recovery"].groups == frozenset({"t1-selfcare-recovery"})
    assert g[OPS].group_prefixes == frozenset({"t1-selfcare-ops"})
    assert all(t.startswith("t1-") for t in g["notifier"].read | g["notifier"].write)


def test_ops_may_watch_the_services_groups_but_not_use_them() -> None:
    g = grants(prefix="t1-")
    assert g[OPS].describe_groups == frozenset({f"t1-selfcare-{s}" for s in SERVICES})
    assert not g[OPS].groups & g[OPS].describe_groups
    assert all(not g[p].describe_groups for p in g if p != OPS)


def test_every_principal_that_reads_has_a_consumer_group() -> None:
    # Read on a topic without Read on a group: a group consumer gets GROUP_AUTHORIZATION_FAILED
    for name, g in grants().items():
        if g.read:
            assert g.groups or g.group_prefixes, name


def test_outside_readers_have_groups_of_their_own() -> None:
    g = grants(prefix="t1-")
    assert g["portal"].group_prefixes == frozenset({"t1-portal-"}) == {outside_group_prefix("portal", "t1-")}
    assert g["crm"].group_prefixes == frozenset({"t1-crm-"})
    assert "t1-selfcare.code.rejected.v1" in g["portal"].read
    assert "t1-selfcare.contract.rejected.v1" in g["crm"].read
    # no outside group may be, or begin like, a group of ours
    ours = {group for s in (*SERVICES, OPS) for group in g[s].groups | g[s].group_prefixes}
    for name in ("crm", "portal"):
        (own,) = g[name].group_prefixes
        assert not g[name].groups and not any(o.startswith(own) or own.startswith(o) for o in ours)


def test_only_ops_may_read_the_topics_configuration() -> None:
    g = grants(prefix="t1-")
    assert g[OPS].describe_configs == frozenset("t1-" + s.name for s in topic_specs())
    assert all(not g[p].describe_configs for p in g if p != OPS)


def test_the_local_broker_gets_the_same_extra_rights_as_the_kafka_users() -> None:
    from deploy.kafka_security import acls

    extra = {(a.principal, a.resource, a.name, a.operation) for a in acls("t1-")
             if a.operation == "DescribeConfigs" or (a.resource == "group" and a.principal == "User:ops"
                                                     and a.pattern == "literal")}
    assert extra == ({("User:ops", "topic", "t1-" + s.name, "DescribeConfigs") for s in topic_specs()}
                     | {("User:ops", "group", f"t1-selfcare-{s}", "Describe") for s in SERVICES})
