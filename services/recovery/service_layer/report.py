"""Metrics of decided code requests, and a warning to ops for each SMS-pumping guard that
refused some."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from services.recovery.adapters.metrics import RecoveryMetrics
from services.recovery.domain.model import Decision, Guard, Issue, Reject

log = logging.getLogger(__name__)


def report_decisions(metrics: RecoveryMetrics, decisions: Sequence[Decision]) -> None:
    for decision in decisions:
        if isinstance(decision, Issue):
            metrics.codes_issued.labels(decision.command.channel.value).inc()
        else:
            metrics.codes_rejected.labels(decision.reason.value).inc()
    guarded = [d for d in decisions if isinstance(d, Reject) and d.guard]
    counted = {Guard.SMS_PREFIX: metrics.sms_prefix_refused,
               Guard.ACCOUNT_DAILY: metrics.account_daily_limit,
               Guard.SMS_BUDGET: metrics.sms_budget_exceeded}
    for guard in Guard:
        hits = [r for r in guarded if r.guard is guard]
        if hits:
            for hit in hits:
                counted[guard].labels(hit.command.channel.value).inc()
            log.warning("code requests refused against SMS pumping", extra={
                "guard": guard.value, "requests": len(hits)})
