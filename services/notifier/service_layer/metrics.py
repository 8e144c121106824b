"""The notifier's own metrics (no ids, no destinations as labels; a destination prefix at most)."""

from __future__ import annotations

from prometheus_client import Gauge

from services.common.metrics import ServiceMetrics


class NotifierMetrics:
    def __init__(self, base: ServiceMetrics) -> None:
        self.base = base
        self.deliveries = base.counter(
            "deliveries_total",
            "Deliveries by channel, kind (code, notice) and status (sent, failed, delivered, undelivered).",
            ["channel", "kind", "status"],
        )
        self.gateway_seconds = base.histogram(
            "gateway_request_seconds", "Duration of one gateway call.", ["channel"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.retries = base.counter("retries_total", "Attempts scheduled for a retry.", ["channel"])
        self.resends = base.counter(
            "resends_total",
            "Sends taken over from a worker that stopped mid-send (same client_ref, same code).",
            ["channel"],
        )
        self.unrecorded = base.counter(
            "updates_unrecorded_total",
            "Attempts' updates the database refused for a reason that is not transient (the row"
            " is sent again once its lease runs out).",
            ["channel"],
        )
        self.reports_not_parked = base.counter(
            "sms_reports_not_parked_total",
            "Delivery reports of a message id no delivery has yet, not kept because"
            " SMS_PARKED_REPORTS_MAX are kept already (answered 503: the gateway sends them again).",
            [],
        )
        self.sms_accepted = base.counter(
            "sms_accepted_total", "SMS accepted, by gateway (primary, fallback).", ["gateway"],
        )
        self.sms_sent_by_prefix = base.counter(
            "sms_sent_by_prefix_total",
            "SMS accepted by a gateway, by destination prefix (+ and the first 4 digits).",
            ["prefix"],
        )
        self.sms_reports_by_prefix = base.counter(
            "sms_reports_by_prefix_total",
            "Carrier delivery reports, by destination prefix and status (delivered, undelivered).",
            ["prefix", "status"],
        )
        self.circuit_open = Gauge(
            f"{base.prefix}_sms_circuit_open", "1 while an SMS gateway's circuit is open.",
            ["gateway"], registry=base.registry,
        )


def destination_prefix(e164: str) -> str:
    """``+79161234567`` → ``+7916``: enough to group by operator and region, never the number."""
    digits = "".join(ch for ch in e164 if ch.isdigit())
    return "+" + digits[:4] if len(digits) >= 8 else "other"
