"""Registration's own Prometheus metrics (labels are commands and outcomes — never ids)."""

from __future__ import annotations

from collections import Counter

from services.common.metrics import ServiceMetrics
from services.registration.domain.model import Outcome


class RegistrationMetrics:
    def __init__(self, base: ServiceMetrics) -> None:
        self.base = base
        self.commands = base.counter("commands_total", "Commands handled, by command and outcome.",
                                     ["command", "outcome"])

    def count(self, command: str, outcomes: Counter[Outcome]) -> None:
        for outcome, n in outcomes.items():
            self.commands.labels(command, outcome.value).inc(n)
