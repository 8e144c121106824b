"""Recovery's own Prometheus metrics (labels are channels, reasons, outcomes — never ids)."""

from __future__ import annotations

from services.common.metrics import ServiceMetrics


class RecoveryMetrics:
    def __init__(self, base: ServiceMetrics) -> None:
        self.base = base
        self.codes_issued = base.counter("codes_issued_total", "Codes issued, by channel.",
                                         ["channel"])
        self.codes_rejected = base.counter("codes_rejected_total",
                                           "Code requests rejected, by reason.", ["reason"])
        self.logins = base.counter(
            "logins_total", "Login attempts, by outcome (success, activated, failure, locked, "
            "throttled).", ["outcome"])
        self.sms_prefix_refused = base.counter(
            "sms_prefix_refused_total",
            "Code requests refused: the mobile is outside SMS_ALLOWED_PREFIXES.", ["channel"])
        self.account_daily_limit = base.counter(
            "account_daily_limit_total",
            "Code requests refused: LIMIT_ACCOUNT_DAILY_MAX codes for the account today.",
            ["channel"])
        self.sms_budget_exceeded = base.counter(
            "sms_budget_exceeded_total",
            "Code requests refused: SMS_HOURLY_BUDGET spent over all accounts.", ["channel"])
        self.notices = base.counter("password_changed_total",
                                    "PasswordChanged notices published.", [])
        self.argon2_seconds = base.histogram(
            "argon2_seconds", "Time of one argon2id hash or verification in a pool worker.",
            ["op"], buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5),
        )
