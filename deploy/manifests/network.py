"""NetworkPolicies: nothing reaches a service's pods but what is listed here.

- recovery's API (6102): pods labelled ``selfcare-access/client: portal-backend`` (the login
  page's backend, in any namespace);
- the notifier's delivery-report webhook (6103): pods labelled
  ``selfcare-access/client: sms-gateway`` (the gateway's callback, or the ingress that carries it);
- every web port: the ``monitoring`` namespace (Prometheus, for ``/metrics``). A NetworkPolicy
  admits a peer to a port, not to a path: the API, the webhook and the ops routes on the same
  ports are guarded by their bearer tokens, not by this policy;
- nothing else: registration has no inbound callers at all. Egress is not restricted (Kafka,
  PostgreSQL and the gateways live outside the namespace's control).
"""

from __future__ import annotations

from typing import Any

from deploy.manifests.services import SERVICE_SPECS, ServiceSpec
from deploy.manifests.workloads import PART_OF, selector

Manifest = dict[str, Any]
MONITORING_NAMESPACE = "monitoring"
CALLERS = {"recovery": "portal-backend", "notifier": "sms-gateway"}
CLIENT_LABEL = "selfcare-access/client"


def _port(svc: ServiceSpec) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": svc.port}]


def _policy(name: str, pod_selector: dict[str, Any], ingress: list[dict[str, Any]]) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": PART_OF}},
        "spec": {"podSelector": pod_selector, "policyTypes": ["Ingress"], "ingress": ingress},
    }


def default_deny() -> Manifest:
    return _policy("selfcare-default-deny", {"matchLabels": {"app.kubernetes.io/part-of": PART_OF}}, [])


def service_policy(svc: ServiceSpec) -> Manifest:
    ingress: list[dict[str, Any]] = [{
        "from": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": MONITORING_NAMESPACE}}}],
        "ports": _port(svc),
    }]
    caller = CALLERS.get(svc.name)
    if caller is not None:
        ingress.append({
            "from": [{"namespaceSelector": {},
                      "podSelector": {"matchLabels": {CLIENT_LABEL: caller}}}],
            "ports": _port(svc),
        })
    return _policy(f"{svc.name}-ingress", {"matchLabels": selector(svc)}, ingress)


def policies() -> list[Manifest]:
    return [default_deny(), *(service_policy(s) for s in SERVICE_SPECS)]
