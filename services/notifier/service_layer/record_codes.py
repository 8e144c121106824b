"""The stream handler: each CodeIssued becomes one delivery row (sending happens elsewhere).

One transaction per batch: dedupe by ``event_id`` and by ``code_id``, insert the deliveries, and
for a code already expired on arrival, record it failed and stage its status. While the
dispatcher has room, new rows are written already leased to this worker (state ``sending``,
attempt 1, as a claim would leave them) and handed to it after the commit, which saves the
claim's read and update; the rest are ``queued`` for the dispatcher's next claim. The stream
never waits on a gateway, so a slow or failing destination cannot hold the partition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from schemas.events import CodeIssued, DeliveryStatus
from schemas.topics import NOTIFICATION_STATUS
from services.common import outbox
from services.common.codec import WireRecord
from services.common.consumer_loop import Inbound
from services.common.db import Database
from services.notifier.adapters.repository import SqlDeliveries
from services.notifier.adapters.tables import outbox as outbox_table
from services.notifier.domain.delivery import Delivery
from services.notifier.domain.model import DeliveryState, FailReason
from services.notifier.service_layer.metrics import NotifierMetrics
from services.notifier.service_layer.statuses import status_record

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Intake(Protocol):
    """The dispatcher, as the stream handler sees it."""

    lease_s: float
    worker_id: str

    def room(self) -> int: ...

    def preferred_gateway(self) -> str | None: ...

    def accept(self, leased: Sequence[Delivery]) -> None: ...

    def wake(self) -> None: ...


@dataclass
class _Recorded:
    expired: list[str] = field(default_factory=list)  # channels of codes expired on arrival
    leased: list[Delivery] = field(default_factory=list)
    queued: int = 0


class RecordCodes:
    """``await record_codes(batch)`` — the BatchRunner handler."""

    def __init__(
        self, *, db: Database, repo: SqlDeliveries, metrics: NotifierMetrics,
        intake: Intake | None = None, clock: Clock = utc_now,
    ) -> None:
        self.db = db
        self.repo = repo
        self.metrics = metrics
        self.intake = intake
        self.clock = clock

    async def __call__(self, items: list[Inbound[CodeIssued]]) -> None:
        now = self.clock()
        placement = Placement.of(self.intake, now)
        done = await self.db.run(lambda s: self._record(s, [i.event for i in items], now, placement))
        for channel in done.expired:
            self.metrics.deliveries.labels(channel, "code", DeliveryStatus.FAILED.value).inc()
        placement.hand_over(self.intake, done)

    def _record(self, session: Session, events: list[CodeIssued], now: datetime,
                placement: Placement) -> _Recorded:
        fresh = self.repo.claim_new_events(session, [str(e.event_id) for e in events])
        known = self.repo.existing_codes(session, [str(e.code_id) for e in events])
        rows: list[dict[str, Any]] = []
        statuses: list[WireRecord] = []
        done = _Recorded()
        for event in events:
            code_id = str(event.code_id)
            if str(event.event_id) not in fresh or code_id in known:
                continue  # a redelivered event, or another event for a code already recorded
            known.add(code_id)
            if event.expires_at <= now:
                rows.append(_row(event, now, DeliveryState.FAILED))
                done.expired.append(event.channel.value)
                statuses.append(status_record(
                    code_id=code_id, request_event_id=str(event.request_event_id),
                    channel=event.channel.value, status=DeliveryStatus.FAILED, attempts=0,
                    destination_masked=event.destination_masked, now=now,
                    reason=FailReason.EXPIRED.value,
                ))
                log.info("code expired before delivery", extra={"code_id": code_id})
            else:
                rows.append(placement.place(_row(event, now, DeliveryState.QUEUED), done))
        self.repo.insert(session, rows)
        outbox.stage(session, outbox_table, NOTIFICATION_STATUS, statuses)
        return done


@dataclass(frozen=True)
class Placement:
    """Whether a new row is leased to this worker at once (while its dispatcher has room) or
    queued for the next claim; a leased SMS row is pinned to the preferred gateway."""

    room: int = 0
    lease_until: datetime | None = None
    worker_id: str | None = None
    gateway: str | None = None

    @classmethod
    def of(cls, intake: Intake | None, now: datetime) -> Placement:
        if intake is None:
            return cls()
        return cls(room=intake.room(), lease_until=now + timedelta(seconds=intake.lease_s),
                   worker_id=intake.worker_id, gateway=intake.preferred_gateway())

    def place(self, row: dict[str, Any], done: _Recorded) -> dict[str, Any]:
        if len(done.leased) >= self.room:
            done.queued += 1
            return row
        sms = row["channel"] == "sms"
        row = {**row, "state": DeliveryState.SENDING.value, "attempts": 1,
               "lease_until": self.lease_until, "leased_by": self.worker_id,
               "gateway": self.gateway if sms else None}
        done.leased.append(_delivery(row, gateway_fresh=sms))
        return row

    def hand_over(self, intake: Intake | None, done: _Recorded) -> None:
        if intake is not None:
            intake.accept(done.leased)
            if done.queued:
                intake.wake()


def _delivery(row: dict[str, Any], **extra: Any) -> Delivery:
    """The delivery a new row describes, as a claim would hand it out."""
    return Delivery(**{f.name: row[f.name] for f in fields(Delivery) if f.name in row}, **extra)


def _row(event: CodeIssued, now: datetime, state: DeliveryState) -> dict[str, Any]:
    final = state == DeliveryState.FAILED
    return {
        "code_id": str(event.code_id),
        "request_event_id": str(event.request_event_id),
        "account_id": str(event.account_id),
        "channel": event.channel.value,
        "locale": event.locale.value,
        "destination_masked": event.destination_masked,
        "destination_enc": None if final else event.destination_enc,
        "password_enc": None if final else event.password_enc,
        "expires_at": event.expires_at,
        "state": state.value,
        "attempts": 0,
        "next_attempt_at": now,
        "lease_until": None,
        "message_id": None,
        "carrier_status": None,
        "last_error": FailReason.EXPIRED.value if final else None,
        "created_at": now,
        "updated_at": now,
        "kind": "code",
        "status_code_id": None,
        "gateway": None,
        "leased_by": None,
    }
