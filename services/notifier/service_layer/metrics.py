"""The notifier's own metrics (no ids, no destinations as labels)."""

from __future__ import annotations

from services.common.metrics import ServiceMetrics


class NotifierMetrics:
    def __init__(self, base: ServiceMetrics) -> None:
        self.base = base
        self.deliveries = base.counter(
            "deliveries_total", "Deliveries by channel and status (sent, failed, delivered, undelivered).",
            ["channel", "status"],
        )
        self.gateway_seconds = base.histogram(
            "gateway_request_seconds", "Duration of one gateway call.", ["channel"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.retries = base.counter("retries_total", "Attempts scheduled for a retry.", ["channel"])
