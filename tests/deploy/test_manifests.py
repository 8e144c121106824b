"""deploy/k8s/: generated from the topic list and the grants, committed as generated, valid
against Kubernetes', Strimzi's and prometheus-operator's schemas, and the overlays build."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from deploy.access import grants
from deploy.manifests import __main__ as cli
from deploy.manifests import layout, monitoring, strimzi
from deploy.manifests.services import COMMON_SETTINGS, SERVICE_SPECS, max_replicas
from schemas.topics import topic_specs
from tests.deploy.k8s_validate import validate
from tests.deploy.overlay_build import build

K8S = layout.K8S_DIR
OVERLAYS = ("local", "production")
SECRETS = {"RECOVERY_API_TOKEN", "SMS_STATUS_TOKEN", "CONTACT_KEYS", "DELIVERY_KEYS", "HASH_PEPPER",
           "SMS_GATEWAY_TOKEN", "SMS_FALLBACK_TOKEN", "SMTP_PASSWORD", "KAFKA_SASL_PASSWORD",
           "REGISTRATION_DATABASE_URL", "RECOVERY_DATABASE_URL", "NOTIFIER_DATABASE_URL", "OPS_API_TOKEN"}


def base_objects() -> list[dict[str, Any]]:
    return build(K8S / "base")


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def test_committed_files_are_what_the_generator_makes() -> None:
    assert cli.stale() == [], "run: python -m deploy.manifests generate"


def test_check_command_fails_on_a_hand_edited_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    wanted = {copy / p.relative_to(K8S) if p.is_relative_to(K8S) else p: text
              for p, text in layout.all_files().items()}
    monkeypatch.setattr(cli, "K8S_DIR", copy)
    monkeypatch.setattr(cli, "all_files", lambda: wanted)
    assert cli.main(["check"]) == 0
    topics = copy / "base" / "kafka" / "topics.yaml"
    topics.write_text(topics.read_text().replace("replicas: 3", "replicas: 1", 1))
    assert cli.main(["check"]) == 1
    assert cli.main(["generate"]) == 0 and cli.main(["check"]) == 0


def test_a_kafka_topic_per_topic_with_its_settings() -> None:
    topics = by_kind(base_objects(), "KafkaTopic")
    specs = topic_specs()
    assert set(topics) == {s.name for s in specs}
    assert any(name.endswith(".dlq") for name in topics)
    for s in specs:
        t = topics[s.name]["spec"]
        assert t["topicName"] == s.name and t["partitions"] == s.partitions and t["replicas"] == 3
        compacted = "compact" in s.cleanup_policy.split(",")
        assert t["config"] == {"cleanup.policy": s.cleanup_policy, "retention.ms": s.retention_ms,
                               "max.message.bytes": s.max_message_bytes, "min.insync.replicas": 2,
                               **({"max.compaction.lag.ms": 86_400_000} if compacted else {})}


def _notifier_acls(users: list[dict[str, Any]]) -> dict[str, list[str]]:
    (notifier,) = [u for u in users if u["metadata"]["name"] == "notifier"]
    return {a["resource"]["name"]: a["operations"] for a in notifier["spec"]["authorization"]["acls"]}


def test_a_new_topic_in_the_list_gets_its_topic_its_dlq_and_its_acls() -> None:
    # a name the list does not hold: the topics and ACLs below can come only from the specs given
    new, dlq = "selfcare.test.added.v1", "selfcare.test.added.v1.dlq"
    assert not {new, dlq} & {s.name for s in topic_specs()}
    assert not {new, dlq} & {t["metadata"]["name"] for t in strimzi.topics()}
    assert not {new, dlq} & set(_notifier_acls(strimzi.users()))
    issued = next(s for s in topic_specs() if s.name == "selfcare.code.issued.v1")
    added = dataclasses.replace(issued, name=new, event="TestAdded")
    specs = (*topic_specs(), added, added.dlq_spec())
    names = {t["metadata"]["name"] for t in strimzi.topics(specs)}
    assert {new, dlq} <= names
    notifier = _notifier_acls(strimzi.users(specs))
    assert notifier[new] == ["Describe", "Read"]
    assert notifier[dlq] == ["Describe", "Write"]


def _from_acls(user: dict[str, Any]) -> dict[str, set[str]]:
    got: dict[str, set[str]] = {"read": set(), "write": set(), "groups": set(), "group_prefixes": set(),
                                "describe_groups": set(), "describe_configs": set()}
    for acl in user["spec"]["authorization"]["acls"]:
        res, ops = acl["resource"], acl["operations"]
        if res["type"] == "topic":
            assert res["patternType"] == "literal" and "Describe" in ops
            assert set(ops) <= {"Describe", "Read", "Write", "DescribeConfigs"}, ops
            got["read"] |= {res["name"]} if "Read" in ops else set()
            got["write"] |= {res["name"]} if "Write" in ops else set()
            got["describe_configs"] |= {res["name"]} if "DescribeConfigs" in ops else set()
        elif res["patternType"] == "prefix":
            got["group_prefixes"].add(res["name"])
        elif "Read" in ops:
            got["groups"].add(res["name"])
        else:
            got["describe_groups"].add(res["name"])
    return got


def test_kafka_users_grant_exactly_what_deploy_access_grants() -> None:
    users = by_kind(base_objects(), "KafkaUser")
    expected = grants()
    assert set(users) == set(expected)
    for name, g in expected.items():
        got = _from_acls(users[name])
        assert users[name]["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert (got["read"], got["write"]) == (set(g.read), set(g.write)), name
        assert (got["groups"], got["group_prefixes"]) == (set(g.groups), set(g.group_prefixes)), name
        assert got["describe_groups"] == set(g.describe_groups), name
        assert got["describe_configs"] == set(g.describe_configs), name
        # `selfcare-ops topics describe` reads every topic's settings: ops only, never altered
        assert got["describe_configs"] == ({s.name for s in topic_specs()} if name == "ops" else set()), name
        # ops may also Describe the services' groups (selfcare-ops lag), nobody else any group
        assert got["describe_groups"] == (
            {f"selfcare-{s.name}" for s in SERVICE_SPECS} if name == "ops" else set()), name
    assert not any(t.endswith(".dlq") for s in ("registration", "recovery", "notifier")
                   for t in _from_acls(users[s])["read"])
    # read from the manifests alone, not from grants(): whoever may read a topic may also use a
    # consumer group, else its group consumer gets GROUP_AUTHORIZATION_FAILED
    for name, user in users.items():
        got = _from_acls(user)
        assert not got["read"] or got["groups"] or got["group_prefixes"], name
    assert _from_acls(users["portal"])["group_prefixes"] == {"portal-"}
    assert _from_acls(users["crm"])["group_prefixes"] == {"crm-"}


def test_the_kafka_cluster() -> None:
    objs = base_objects()
    kafka = by_kind(objs, "Kafka")[strimzi.CLUSTER]["spec"]
    listeners = {(x["tls"], x["authentication"]["type"]) for x in kafka["kafka"]["listeners"]}
    assert listeners == {(True, "tls"), (True, "scram-sha-512")}
    assert kafka["kafka"]["authorization"] == {"type": "simple"}
    assert kafka["kafka"]["config"]["min.insync.replicas"] == 2
    assert "kafkaExporter" in kafka
    pool = by_kind(objs, "KafkaNodePool")["dual-role"]["spec"]
    assert pool["replicas"] == 3 and set(pool["roles"]) == {"controller", "broker"}


@pytest.mark.parametrize("path", sorted(p.relative_to(K8S).as_posix() for p in (K8S / "base").rglob("*.yaml")
                                        if p.name != "kustomization.yaml"))
def test_every_base_manifest_is_valid(path: str) -> None:
    objs = [o for o in yaml.safe_load_all((K8S / path).read_text()) if o]
    assert objs
    for obj in objs:
        validate(obj)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_builds_and_is_valid(overlay: str) -> None:
    objs = build(K8S / "overlays" / overlay)
    assert len(objs) == len(base_objects())
    for obj in objs:
        validate(obj)


def _kustomize() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.skipif(_kustomize() is None, reason="neither kustomize nor kubectl (kustomize built in) is installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_builds_each_overlay_as_the_structural_build_does(overlay: str) -> None:
    cmd = _kustomize()
    assert cmd is not None
    out = subprocess.run([*cmd, str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    built = [o for o in yaml.safe_load_all(out) if o]
    for obj in built:
        validate(obj)

    def key(o: dict[str, Any]) -> tuple[str, str]:
        return o["kind"], o["metadata"]["name"]

    ours = build(K8S / "overlays" / overlay)
    assert sorted(map(key, built)) == sorted(map(key, ours))
    theirs = {key(o): o for o in built}
    for o in ours:
        assert theirs[key(o)]["spec"] == o.get("spec") if "spec" in o else True, key(o)


def test_the_validators_refuse_what_is_wrong() -> None:
    topic = strimzi.topics()[0]
    bad_topic = {**topic, "spec": {**topic["spec"], "partition": 4}}
    with pytest.raises(jsonschema.ValidationError):
        validate(bad_topic)
    user = strimzi.users()[0]
    acl = user["spec"]["authorization"]["acls"][0]
    bad_user = {**user, "spec": {**user["spec"], "authorization": {
        "type": "simple", "acls": [{**acl, "operations": ["Consume"]}]}}}
    with pytest.raises(jsonschema.ValidationError):
        validate(bad_user)
    deployment = by_kind(base_objects(), "Deployment")["recovery"]
    bad = yaml.safe_load(yaml.safe_dump(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "6102"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad)
    rule = monitoring.prometheus_rule()
    rule["spec"]["groups"][0]["rules"][0]["severity"] = "page"
    with pytest.raises(jsonschema.ValidationError):
        validate(rule)


@pytest.mark.parametrize("where", ["base", *OVERLAYS])
def test_deployments_replicas_probes_and_secrets(where: str) -> None:
    objs = base_objects() if where == "base" else build(K8S / "overlays" / where)
    deployments = by_kind(objs, "Deployment")
    assert set(deployments) == {s.name for s in SERVICE_SPECS}
    for svc in SERVICE_SPECS:
        d = deployments[svc.name]
        assert 1 <= d["spec"]["replicas"] <= max_replicas(svc.name) == 4
        pod = d["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert c["command"] == ["python", "-m", f"services.{svc.name}", "worker"]
        assert c["ports"] == [{"name": "web", "containerPort": svc.port, "protocol": "TCP"}]
        # the services that take HTTP from outside stay behind the load balancer without
        # partitions (a standby worker, a rebalance); registration's readiness waits for them
        assert c["readinessProbe"]["httpGet"]["path"] == (
            "/readyz" if svc.name == "registration" else "/readyz/http")
        assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert c["securityContext"]["runAsNonRoot"] and not c["securityContext"]["allowPrivilegeEscalation"]
        assert set(c["resources"]["requests"]) == {"cpu", "memory"}
        env = {e["name"]: e for e in c["env"]}
        for name, entry in env.items():
            if name in SECRETS:
                assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], name
        assert {f"{svc.name.upper()}_DATABASE_URL", "KAFKA_SASL_PASSWORD"} <= set(env)
        # ops routes are opt-in: each service takes OPS_API_TOKEN from its own Secret when the key
        # is there, and starts without it (no ops route, 404) when it is not
        assert env["OPS_API_TOKEN"]["valueFrom"] == {"secretKeyRef": {
            "name": f"selfcare-{svc.name}", "key": "OPS_API_TOKEN", "optional": True}}, svc.name
        # the pepper only where logins are hashed: the notifier could brute-force the mobile
        # numbers behind the login keys of the AccountChanged records it may read
        assert ("HASH_PEPPER" in env) == (svc.name != "notifier"), svc.name
    assert {"RECOVERY_API_TOKEN", "CONTACT_KEYS", "DELIVERY_KEYS"} <= set(
        e["name"] for e in deployments["recovery"]["spec"]["template"]["spec"]["containers"][0]["env"])
    notifier_env = {e["name"] for e in deployments["notifier"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"SMS_STATUS_TOKEN", "SMS_GATEWAY_TOKEN", "SMS_FALLBACK_TOKEN", "SMTP_PASSWORD", "DELIVERY_KEYS"} <= notifier_env
    assert "CONTACT_KEYS" not in notifier_env
    for cm in by_kind(objs, "ConfigMap").values():
        assert not SECRETS & set(cm["data"]), cm["metadata"]["name"]
    assert by_kind(objs, "ConfigMap")["selfcare-common"]["data"]["WEB_BIND_HOST"] == "0.0.0.0"
    assert set(by_kind(objs, "PodDisruptionBudget")) == {s.name for s in SERVICE_SPECS}
    services = by_kind(objs, "Service")
    assert {n: s["spec"]["ports"][0]["port"] for n, s in services.items()} == {"recovery": 6102, "notifier": 6103}


@pytest.mark.parametrize("where", ["base", *OVERLAYS])
def test_a_deployment_ready_only_with_partitions_does_not_surge(where: str) -> None:
    """A rollout with ``maxSurge: 1`` starts one pod more than the replicas before it stops an
    old one. That pod's worker joins the consumer group as a member more than the workers
    already holding the partitions, and faust's sticky assignor gives it none (4 partitions,
    2 workers: the third is a standby, docs/reliability.md "Observations"). A readiness probe on
    ``/readyz`` answers 503 without partitions, so the surge pod never turns ready; with
    ``maxUnavailable: 0`` no old pod is stopped for it, and the rollout never finishes. Such a
    Deployment stops an old pod first (``maxSurge: 0``, ``maxUnavailable`` at least 1): the new
    pod then replaces a member, and the rebalance gives it the partitions the old one held."""
    objs = base_objects() if where == "base" else build(K8S / "overlays" / where)
    gated = []
    for name, d in by_kind(objs, "Deployment").items():
        (c,) = d["spec"]["template"]["spec"]["containers"]
        strategy = d["spec"]["strategy"]
        # no default: Kubernetes' own is maxSurge 25 %, rounded up to one pod
        assert strategy["type"] == "RollingUpdate" and set(strategy["rollingUpdate"]) == {
            "maxSurge", "maxUnavailable"}, name
        if c["readinessProbe"]["httpGet"]["path"] != "/readyz":
            continue
        gated.append(name)
        assert strategy["rollingUpdate"]["maxSurge"] in (0, "0%"), name
        assert strategy["rollingUpdate"]["maxUnavailable"] == 1, name  # 0 and 0: no rollout at all
    assert "registration" in gated  # the test has something to check


@pytest.mark.parametrize("where", ["base", *OVERLAYS])
def test_the_services_taking_http_drain_before_they_stop(where: str) -> None:
    objs = base_objects() if where == "base" else build(K8S / "overlays" / where)
    services = by_kind(objs, "Service")
    for name, d in by_kind(objs, "Deployment").items():
        pod = d["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        grace = pod["terminationGracePeriodSeconds"]
        if name not in services:  # registration: no caller to drain
            assert "lifecycle" not in c and grace >= 30, name
            continue
        # out of the Service's endpoints first, SIGTERM only after the callers have noticed
        assert c["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "5"]}}}, name
        # the sleep counts against the grace period: the service's own stop needs the rest
        assert grace >= 5 + 30, name


def test_only_the_named_callers_reach_the_api_and_the_webhook() -> None:
    policies = by_kind(base_objects(), "NetworkPolicy")
    assert policies["selfcare-default-deny"]["spec"]["ingress"] == []

    def callers(name: str) -> list[tuple[Any, list[int]]]:
        return [(rule["from"], [p["port"] for p in rule["ports"]])
                for rule in policies[f"{name}-ingress"]["spec"]["ingress"]]

    monitoring_peer = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]

    def client(role: str) -> list[dict[str, Any]]:
        return [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"selfcare-access/client": role}}}]

    assert callers("recovery") == [(monitoring_peer, [6102]), (client("portal-backend"), [6102])]
    assert callers("notifier") == [(monitoring_peer, [6103]), (client("sms-gateway"), [6103])]
    assert callers("registration") == [(monitoring_peer, [6101])]


def _exposed_metric_names() -> set[str]:
    from services.common.metrics import ServiceMetrics
    from services.notifier.service_layer.metrics import NotifierMetrics
    from services.recovery.service_layer.metrics import RecoveryMetrics

    names: set[str] = set()
    for service in ("registration", "recovery", "notifier"):
        base = ServiceMetrics(service)
        if service == "recovery":
            RecoveryMetrics(base)
        if service == "notifier":
            NotifierMetrics(base)
        for family in base.registry.collect():
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_alert_rules_use_metrics_that_exist() -> None:
    rules = {r["alert"]: r for r in monitoring.RULES}
    assert set(rules) == {"SelfcareConsumerLag", "SelfcareDeadLetters", "SelfcareDeliveriesFailed",
                          "SelfcareSmsBudgetExceeded"}
    exposed = _exposed_metric_names()
    assert "kafka_consumergroup_lag" in rules["SelfcareConsumerLag"]["expr"]
    assert 'notifier_deliveries_total{status="failed"}' in rules["SelfcareDeliveriesFailed"]["expr"]
    assert "notifier_deliveries_total" in exposed
    dlq_re = re.search(r'__name__=~"([^"]+)"', rules["SelfcareDeadLetters"]["expr"])
    assert dlq_re is not None
    assert {n for n in exposed if re.fullmatch(dlq_re.group(1), n)} == {
        f"{s}_dlq_records_total" for s in ("registration", "recovery", "notifier")}
    assert monitoring.SMS_BUDGET_METRIC in exposed


def test_settings_are_strings_and_the_kafka_bootstrap_is_the_scram_listener() -> None:
    assert all(isinstance(v, str) for v in COMMON_SETTINGS.values())
    assert strimzi.BOOTSTRAP.endswith(f":{strimzi.SCRAM_PORT}")
    assert COMMON_SETTINGS["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"


def test_the_docs_reach_each_services_ops_routes_by_its_deployment_and_port() -> None:
    doc = (layout.REPO_ROOT / "docs" / "scaling.md").read_text(encoding="utf-8")
    deployments = by_kind(build(K8S / "overlays" / "production"), "Deployment")
    # the opt-in adds the key to every service's Secret (selfcare-<service>)
    assert "for s in " + " ".join(s.name for s in SERVICE_SPECS) + "; do" in doc
    assert "kubectl -n selfcare patch secret selfcare-$s" in doc
    assert {s.secret_name for s in SERVICE_SPECS} == {f"selfcare-{s.name}" for s in SERVICE_SPECS}
    for svc in SERVICE_SPECS:
        d = deployments[svc.name]
        assert f"kubectl -n {d['metadata']['namespace']} port-forward deploy/{svc.name} {svc.port}" in doc


def _site_overlay_from_the_docs(tmp_path: Path) -> Path:
    """The files docs/scaling.md shows under "Site overlay", written beside a "checkout" of this
    repository (a symbolic link), as the docs lay them out."""
    doc = (layout.REPO_ROOT / "docs" / "scaling.md").read_text(encoding="utf-8")
    files = dict(re.findall(r"^`(site/[\w.-]+)`:\n\n```yaml\n(.*?)^```", doc, re.MULTILINE | re.DOTALL))
    assert set(files) == {"site/kustomization.yaml", "site/settings.yaml"}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    (tmp_path / "selfcare-access").symlink_to(layout.REPO_ROOT, target_is_directory=True)
    return tmp_path / "site"


def _check_site_values(objs: list[dict[str, Any]]) -> None:
    maps = by_kind(objs, "ConfigMap")
    notifier, recovery = maps["selfcare-notifier"]["data"], maps["selfcare-recovery"]["data"]
    assert notifier["SMS_GATEWAY_URL"] == "https://sms.example.ru/api/v1/messages"
    assert notifier["SMS_FALLBACK_URL"] == "https://sms-backup.example.ru/api/v1/messages"
    assert (notifier["SMTP_HOST"], notifier["SMTP_PORT"]) == ("smtp.example.ru", "587")
    assert notifier["MAIL_FROM"] == "selfcare@example.ru"
    assert recovery["TRUSTED_PROXIES"] == "10.244.0.0/16"
    # a patch changes only what it names
    assert notifier["SMTP_STARTTLS"] == "true" and recovery["LOGIN_LOCKOUT_FAILURES"] == "5"
    assert not any(".invalid" in v for cm in maps.values() for v in cm["data"].values())
    for d in by_kind(objs, "Deployment").values():
        (c,) = d["spec"]["template"]["spec"]["containers"]
        assert c["image"] == "registry.example.ru/selfcare/selfcare-access:0.1.0"
        assert d["metadata"]["namespace"] == "selfcare"
    assert {d["metadata"]["name"]: d["spec"]["replicas"] for d in by_kind(objs, "Deployment").values()} \
        == layout.PRODUCTION_REPLICAS
    for obj in objs:
        validate(obj)


def test_the_site_overlay_of_the_docs_builds_with_its_values(tmp_path: Path) -> None:
    site = _site_overlay_from_the_docs(tmp_path)
    objs = build(site)
    assert len(objs) == len(base_objects())
    _check_site_values(objs)


@pytest.mark.skipif(_kustomize() is None, reason="neither kustomize nor kubectl (kustomize built in) is installed")
def test_kustomize_builds_the_site_overlay_of_the_docs(tmp_path: Path) -> None:
    cmd = _kustomize()
    assert cmd is not None
    site = _site_overlay_from_the_docs(tmp_path)
    out = subprocess.run([*cmd, str(site)], capture_output=True, text=True, check=True, timeout=60).stdout
    objs = [o for o in yaml.safe_load_all(out) if o]
    assert len(objs) == len(base_objects())
    _check_site_values(objs)
