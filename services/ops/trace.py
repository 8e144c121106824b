"""``trace``: one code request's timeline across the topics, masked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.events import CodeIssued, CodeRejected, CodeRequested, NotificationKind, NotificationStatus
from schemas.topics import CODE_ISSUED, CODE_REJECTED, CODE_REQUESTED, NOTIFICATION_STATUS
from services.common.kafka_config import KafkaSettings
from services.ops.kafka_read import scan
from services.ops.present import mask_login, parse


@dataclass(frozen=True)
class Step:
    at: datetime
    what: str
    detail: dict[str, Any]

    def line(self) -> str:
        detail = " ".join(f"{k}={v}" for k, v in self.detail.items() if v is not None)
        return f"{self.at.astimezone(UTC).isoformat(timespec='milliseconds')}  {self.what:<22} {detail}"


async def trace(bootstrap: KafkaSettings | str, ident: str, prefix: str = "") -> list[Step]:
    """Steps of the request whose event id, or whose code id, is ``ident`` (oldest first)."""
    topics = [prefix + t for t in (CODE_REQUESTED, CODE_ISSUED, CODE_REJECTED, NOTIFICATION_STATUS)]
    # by event id: the outbox publishes at least once, and a record published again is one step
    requests: dict[str, CodeRequested] = {}
    by_id: dict[str, CodeIssued | CodeRejected | NotificationStatus] = {}
    async for record in scan(bootstrap, topics):
        event = parse(record.topic, record.value, prefix)
        if isinstance(event, CodeRequested):
            requests[str(event.event_id)] = event
        elif isinstance(event, CodeIssued | CodeRejected | NotificationStatus):
            by_id[str(event.event_id)] = event
    issued = [e for e in by_id.values() if isinstance(e, CodeIssued)]
    rejected = [e for e in by_id.values() if isinstance(e, CodeRejected)]
    statuses = [e for e in by_id.values() if isinstance(e, NotificationStatus)]
    # the statuses outlive the requests and codes (14 days against 24 h): each code delivery's
    # status carries its request's id, so a request or a code is still found through them
    request_id = ident
    for code in issued:
        if str(code.code_id) == ident:
            request_id = str(code.request_event_id)
    for s in statuses:
        if str(s.code_id) == ident and s.request_event_id is not None:
            request_id = str(s.request_event_id)
    steps: list[Step] = []
    if request_id in requests:
        r = requests[request_id]
        steps.append(Step(r.occurred_at, "requested", {
            "event_id": r.event_id, "login": mask_login(r.login), "channel": r.channel.value,
            "locale": r.locale.value}))
    codes = {str(c.code_id) for c in issued if str(c.request_event_id) == request_id}
    codes |= {str(s.code_id) for s in statuses if str(s.request_event_id) == request_id
              or str(s.code_id) == ident}
    for c in issued:
        if str(c.code_id) in codes:
            steps.append(Step(c.occurred_at, "issued", {
                "code_id": c.code_id, "channel": c.channel.value, "to": c.destination_masked,
                "expires_at": c.expires_at.isoformat()}))
    for j in rejected:
        if str(j.request_event_id) == request_id:
            steps.append(Step(j.occurred_at, f"rejected: {j.reason.value}", {
                "advice": j.advice, "support_phone": j.support_phone,
                "retry_after_s": j.retry_after_s}))
    for s in statuses:  # a notice (password changed) carries the code's id but is not its delivery
        if str(s.code_id) in codes:
            what = s.status.value if s.kind == NotificationKind.CODE else f"{s.kind.value} {s.status.value}"
            steps.append(Step(s.occurred_at, what, {
                "attempts": s.attempts, "to": s.destination_masked, "reason": s.reason,
                "message_id": s.message_id}))
    return sorted(steps, key=lambda step: step.at)


def as_json(steps: list[Step]) -> str:
    return json.dumps(
        [{"at": s.at.isoformat(), "what": s.what, **{k: str(v) for k, v in s.detail.items() if v is not None}}
         for s in steps],
        ensure_ascii=False, indent=2,
    )
