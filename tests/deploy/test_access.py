"""The grants derived from schemas/topics.yaml: each principal gets exactly its topics and group."""

from __future__ import annotations

from deploy.access import OPS, SERVICES, grants
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
