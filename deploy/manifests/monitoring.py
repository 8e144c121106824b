"""Prometheus: PodMonitors (prometheus-operator) and the alert rules.

The services' metric names are ``<service>_<name>`` (``services/common/metrics.py``); consumer lag
in records is Strimzi Kafka Exporter's ``kafka_consumergroup_lag``.
"""

from __future__ import annotations

from typing import Any

from deploy.manifests import strimzi
from deploy.manifests.services import SERVICE_SPECS
from deploy.manifests.workloads import PART_OF

Manifest = dict[str, Any]
API = "monitoring.coreos.com/v1"
LAG_RECORDS = 1000
# The SMS budget alarm: recovery counts refusals past SMS_HOURLY_BUDGET under this name.
SMS_BUDGET_METRIC = "recovery_sms_budget_exceeded_total"
SERVICES_RE = "|".join(s.name for s in SERVICE_SPECS)


def pod_monitors() -> list[Manifest]:
    services = {
        "apiVersion": API, "kind": "PodMonitor",
        "metadata": {"name": "selfcare-services", "labels": {"app.kubernetes.io/part-of": PART_OF}},
        "spec": {"selector": {"matchLabels": {"app.kubernetes.io/part-of": PART_OF}},
                 "podMetricsEndpoints": [{"port": "web", "path": "/metrics", "interval": "30s"}]},
    }
    exporter = {
        "apiVersion": API, "kind": "PodMonitor",
        "metadata": {"name": "selfcare-kafka-exporter", "labels": {"app.kubernetes.io/part-of": PART_OF}},
        "spec": {"selector": {"matchLabels": {
                     "strimzi.io/kind": "Kafka", "strimzi.io/name": f"{strimzi.CLUSTER}-kafka-exporter"}},
                 "podMetricsEndpoints": [{"port": "tcp-prometheus", "path": "/metrics", "interval": "30s"}]},
    }
    return [services, exporter]


def _rule(alert: str, expr: str, duration: str, severity: str, summary: str) -> dict[str, Any]:
    return {"alert": alert, "expr": expr, "for": duration,
            "labels": {"severity": severity}, "annotations": {"summary": summary}}


RULES: list[dict[str, Any]] = [
    _rule("SelfcareConsumerLag",
          "sum by (consumergroup, topic) "
          f'(kafka_consumergroup_lag{{consumergroup=~"selfcare-({SERVICES_RE})"}}) > {LAG_RECORDS}',
          "10m", "warning",
          "{{ $labels.consumergroup }} is more than " + str(LAG_RECORDS)
          + " records behind on {{ $labels.topic }} (selfcare-ops lag shows each partition)"),
    _rule("SelfcareDeadLetters",
          "sum by (topic, error_class) "
          f'(increase({{__name__=~"({SERVICES_RE})_dlq_records_total"}}[15m])) > 0',
          "0m", "warning",
          "records of {{ $labels.topic }} went to its .dlq ({{ $labels.error_class }}): "
          "selfcare-ops dlq list"),
    _rule("SelfcareDeliveriesFailed",
          'sum by (channel) (increase(notifier_deliveries_total{status="failed"}[15m])) > 0',
          "0m", "critical",
          "{{ $labels.channel }} deliveries failed "
          "(gateway refused, or retries exhausted before the code expired)"),
    _rule("SelfcareSmsBudgetExceeded",
          f"sum(increase({SMS_BUDGET_METRIC}[15m])) > 0",
          "0m", "critical",
          "SMS_HOURLY_BUDGET reached: SMS code requests are refused as rate_limited (possible SMS pumping)"),
]


def prometheus_rule() -> Manifest:
    return {
        "apiVersion": API, "kind": "PrometheusRule",
        "metadata": {"name": "selfcare-alerts", "labels": {"app.kubernetes.io/part-of": PART_OF}},
        "spec": {"groups": [{"name": "selfcare-access", "rules": RULES}]},
    }


def objects() -> list[Manifest]:
    return [*pod_monitors(), prometheus_rule()]
