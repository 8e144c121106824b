"""Prometheus metrics of one service: names carry the service prefix, labels never carry ids."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class ServiceMetrics:
    """The metrics every consumer has; services add their own on ``registry``."""

    def __init__(self, service: str) -> None:
        self.prefix = service
        self.registry = CollectorRegistry()
        self.events_consumed = Counter(
            f"{service}_events_consumed_total",
            "Records consumed, by topic and outcome (processed, dead_lettered).",
            ["topic", "outcome"],
            registry=self.registry,
        )
        self.dlq_records = Counter(
            f"{service}_dlq_records_total",
            "Records sent to a dead-letter topic, by source topic and error class.",
            ["topic", "error_class"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            f"{service}_batch_processing_seconds",
            "Time to handle one batch of records, decode to publish.",
            ["topic"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.lag_seconds = Gauge(
            f"{service}_processing_lag_seconds",
            "Age of the newest record of the last batch when it was handled.",
            ["topic"],
            registry=self.registry,
        )
        self.batch_retries = Counter(
            f"{service}_batch_retries_total",
            "Batches retried because the database was unavailable.",
            ["topic"],
            registry=self.registry,
        )

    def counter(self, name: str, doc: str, labels: list[str]) -> Counter:
        return Counter(f"{self.prefix}_{name}", doc, labels, registry=self.registry)

    def histogram(self, name: str, doc: str, labels: list[str],
                  buckets: tuple[float, ...] = Histogram.DEFAULT_BUCKETS) -> Histogram:
        return Histogram(
            f"{self.prefix}_{name}", doc, labels, registry=self.registry, buckets=buckets
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
