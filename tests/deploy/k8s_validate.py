"""Offline validation of manifests: Kubernetes' own kinds, Strimzi's CRDs, prometheus-operator's."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate

from deploy import strimzi_crds

KUBE_VERSION = "1.32.0"

# prometheus-operator's PodMonitor and PrometheusRule, for the fields the generator writes
# (written from the operator's API reference: monitoring.coreos.com/v1); no registry reachable
# from here ships their CRDs.
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {"type": "object", "required": ["name"],
         "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                        "labels": _LABELS, "annotations": _LABELS},
         "additionalProperties": False}
_SELECTOR = {"type": "object", "properties": {"matchLabels": _LABELS}, "additionalProperties": False}
MONITORING_SCHEMAS: dict[str, dict[str, Any]] = {
    "PodMonitor": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PodMonitor"},
            "metadata": _META,
            "spec": {"type": "object", "required": ["selector", "podMetricsEndpoints"],
                     "additionalProperties": False,
                     "properties": {
                         "selector": _SELECTOR,
                         "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
                             "type": "object", "required": ["port"], "additionalProperties": False,
                             "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                            "interval": {"type": "string",
                                                         "pattern": "^[0-9]+(ms|s|m|h)$"}}}}}},
        },
        "additionalProperties": False,
    },
    "PrometheusRule": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"},
            "metadata": _META,
            "spec": {"type": "object", "required": ["groups"], "additionalProperties": False,
                     "properties": {"groups": {"type": "array", "items": {
                         "type": "object", "required": ["name", "rules"], "additionalProperties": False,
                         "properties": {"name": {"type": "string"}, "rules": {"type": "array", "items": {
                             "type": "object", "required": ["alert", "expr"], "additionalProperties": False,
                             "properties": {"alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                            "expr": {"type": "string", "minLength": 1},
                                            "for": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                            "labels": _LABELS, "annotations": _LABELS}}}}}}}},
        },
        "additionalProperties": False,
    },
}


def _closed(schema: Any) -> Any:
    """The CRD schema with unknown fields refused (as the API server prunes and kubectl warns)."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


@cache
def strimzi_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for key, schema in strimzi_crds.schemas().items():
        closed = _closed(copy.deepcopy(schema))
        # metadata is checked by the API server, not by the CRD's schema
        closed["properties"]["metadata"] = _META
        found[key] = closed
    return found


def validate(obj: dict[str, Any]) -> None:
    """Raise if ``obj`` is not a valid object of its kind."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    if key[0].startswith("kafka.strimzi.io/"):
        schema = strimzi_schemas().get(key)
        if schema is None:
            raise jsonschema.ValidationError(f"no Strimzi CRD for {key}")
        jsonschema.Draft7Validator(schema).validate(obj)
    elif key[0].startswith("monitoring.coreos.com/"):
        jsonschema.Draft7Validator(MONITORING_SCHEMAS[key[1]]).validate(obj)
    else:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
