"""Deployments, Services, PodDisruptionBudgets and ConfigMaps of the three services."""

from __future__ import annotations

from typing import Any

from deploy.manifests import strimzi
from deploy.manifests.services import COMMON_SETTINGS, SERVICE_SPECS, ServiceSpec

Manifest = dict[str, Any]
PART_OF = "selfcare-access"
IMAGE = "selfcare-access"
UID = 10001  # the image's non-root user (Dockerfile)
# only recovery's API (portal backend) and the notifier's webhook (SMS gateway) are called
EXPOSED = ("recovery", "notifier")
# A pod that takes HTTP from outside (EXPOSED) is removed from its Service's endpoints at the same
# moment it is told to stop; kube-proxy and the callers learn of it a moment later. It sleeps this
# long before SIGTERM (preStop) so that requests still routed to it are served, not refused.
# `sleep` is coreutils' in the image (python:3.11-slim-bookworm, tests/deploy/test_image_and_units.py).
PRE_STOP_SLEEP_S = 5
# preStop sleep and the service's own stop (the notifier gives calls in flight 5 s; every worker
# then commits, leaves its group and closes its producer) must fit in it, else SIGKILL
TERMINATION_GRACE_S = 60


def labels(svc: ServiceSpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": svc.name, "app.kubernetes.io/part-of": PART_OF}


def selector(svc: ServiceSpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": svc.name, "app.kubernetes.io/part-of": PART_OF}


def _env(svc: ServiceSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "KAFKA_BOOTSTRAP_SERVERS", "value": strimzi.BOOTSTRAP},
        {"name": "KAFKA_SASL_USERNAME", "value": svc.name},
        # Strimzi's User Operator keeps the SCRAM password in a Secret named after the KafkaUser
        {"name": "KAFKA_SASL_PASSWORD",
         "valueFrom": {"secretKeyRef": {"name": svc.name, "key": "password"}}},
    ]
    for key in svc.secrets:
        env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": svc.secret_name, "key": key}}})
    for key in svc.optional_secrets:
        env.append({"name": key, "valueFrom": {"secretKeyRef": {
            "name": svc.secret_name, "key": key, "optional": True}}})
    return env


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "web"}, "periodSeconds": period,
            "timeoutSeconds": 3, "failureThreshold": failures}


def rolling_update(svc: ServiceSpec) -> dict[str, int]:
    """One pod at a time. A service ready without partitions starts a new pod before an old one
    stops (the group rebalances once per pod). One whose readiness waits for partitions
    (registration) stops an old pod first: a surge pod is one worker more than the replicas, and
    faust's sticky assignor leaves it without a partition (a standby, docs/reliability.md
    "Observations"), so it would never be ready, no old pod would stop and the rollout would
    never finish. The PodDisruptionBudget allows the same one pod down."""
    if svc.ready_needs_partitions:
        return {"maxSurge": 0, "maxUnavailable": 1}
    return {"maxSurge": 1, "maxUnavailable": 0}


def deployment(svc: ServiceSpec) -> Manifest:
    container = {
        "name": svc.name,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", f"services.{svc.name}", "worker"],
        "ports": [{"name": "web", "containerPort": svc.port, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": "selfcare-common"}},
                    {"configMapRef": {"name": f"selfcare-{svc.name}"}}],
        "env": _env(svc),
        "resources": svc.resources.render(),
        "startupProbe": _probe("/livez", 2, 60),
        "livenessProbe": _probe("/livez", 10, 3),
        "readinessProbe": _probe(svc.ready_path, 5, 2),
        **({"lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_SLEEP_S)]}}}}
           if svc.name in EXPOSED else {}),
        "securityContext": {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "var", "mountPath": COMMON_SETTINGS["SELFCARE_VAR_DIR"]},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir of the pod
            {"name": "kafka-ca", "mountPath": "/etc/selfcare/kafka-ca", "readOnly": True},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": svc.name, "labels": labels(svc)},
        "spec": {
            "replicas": svc.replicas,
            "selector": {"matchLabels": selector(svc)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling_update(svc)},
            "template": {
                "metadata": {
                    "labels": labels(svc),
                    "annotations": {"prometheus.io/scrape": "true",
                                    "prometheus.io/port": str(svc.port),
                                    "prometheus.io/path": "/metrics"},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
                    "securityContext": {"runAsNonRoot": True, "fsGroup": UID,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": selector(svc)},
                    }],
                    "containers": [container],
                    "volumes": [
                        {"name": "var", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                        {"name": "kafka-ca", "secret": {"secretName": strimzi.CA_SECRET,
                                                        "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    ],
                },
            },
        },
    }


def disruption_budget(svc: ServiceSpec) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": svc.name, "labels": labels(svc)},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(svc)}},
    }


def service(svc: ServiceSpec) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": svc.name, "labels": labels(svc)},
        "spec": {"selector": selector(svc),
                 "ports": [{"name": "web", "port": svc.port, "targetPort": "web", "protocol": "TCP"}]},
    }


def config_maps() -> list[Manifest]:
    common = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "selfcare-common", "labels": {"app.kubernetes.io/part-of": PART_OF}},
              "data": dict(COMMON_SETTINGS)}
    own = [{"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"selfcare-{s.name}", "labels": labels(s)},
            "data": dict(s.settings)} for s in SERVICE_SPECS]
    return [common, *own]


def for_service(svc: ServiceSpec) -> list[Manifest]:
    objs = [deployment(svc), disruption_budget(svc)]
    if svc.name in EXPOSED:
        objs.append(service(svc))
    return objs
