"""Handler of ``RecordCode``: each code becomes one delivery row (sending happens elsewhere); and
where a newly recorded delivery goes, for ``record_notices`` too.

- **Recording codes**: one transaction per batch: dedupe by ``event_id`` and by ``code_id``, add
  the deliveries (leased or queued), and for a code already expired on arrival, record it failed
  and stage its status. The stream never waits on a gateway, so a slow or failing destination
  cannot hold the partition.
- **Placement**: a new row is leased at once to this worker's dispatcher while it has room (state
  ``sending``, attempt 1, as a claim would leave it, which saves the claim's read and update),
  else ``queued`` for the next claim. A leased SMS row is pinned to the preferred gateway.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from schemas.events import DeliveryStatus
from schemas.topics import NOTIFICATION_STATUS
from services.notifier.domain.commands import RecordCode
from services.notifier.domain.model import Delivery, DeliveryState, FailReason, NewDelivery
from services.notifier.service_layer.metrics import NotifierMetrics
from services.notifier.service_layer.ports import Clock, Transaction, UnitOfWork, utc_now
from services.notifier.service_layer.statuses import status_record

log = logging.getLogger(__name__)

# --- Recording codes -------------------------------------------------------------------------


async def record_codes(
    commands: Sequence[RecordCode], *, uow: UnitOfWork, metrics: NotifierMetrics,
    direct: DirectSend | None = None, clock: Clock = utc_now,
) -> Placed:
    now = clock()
    placement = Placement.of(direct, now)
    placed = await uow.run(lambda tx: _record(tx, commands, now, placement))
    for channel in placed.expired:
        metrics.deliveries.labels(channel, "code", DeliveryStatus.FAILED.value).inc()
    placement.hand_over(direct, placed)
    return placed


def _record(tx: Transaction, commands: Sequence[RecordCode], now: datetime,
            placement: Placement) -> Placed:
    fresh = tx.processed.claim_new([c.event_id for c in commands])
    known = tx.deliveries.existing({c.code_id for c in commands})
    rows: list[NewDelivery] = []
    placed = Placed()
    expired = []
    for command in commands:
        if command.event_id not in fresh or command.code_id in known:
            continue  # a redelivered event, or another event for a code already recorded
        known.add(command.code_id)
        if command.expires_at <= now:
            rows.append(_row(command, now, DeliveryState.FAILED))
            placed.expired.append(command.channel)
            expired.append(command)
            log.info("code expired before delivery", extra={"code_id": command.code_id})
        else:
            rows.append(placement.place(_row(command, now, DeliveryState.QUEUED), placed))
    tx.deliveries.add(rows)
    tx.outbox.stage(NOTIFICATION_STATUS, [status_record(
        code_id=c.code_id, request_event_id=c.request_event_id, channel=c.channel,
        status=DeliveryStatus.FAILED, attempts=0, destination_masked=c.destination_masked,
        now=now, reason=FailReason.EXPIRED.value) for c in expired])
    return placed


def _row(command: RecordCode, now: datetime, state: DeliveryState) -> NewDelivery:
    final = state == DeliveryState.FAILED
    return NewDelivery(
        code_id=command.code_id, request_event_id=command.request_event_id,
        account_id=command.account_id, channel=command.channel, locale=command.locale,
        destination_masked=command.destination_masked,
        destination_enc=None if final else command.destination_enc,
        password_enc=None if final else command.password_enc,
        expires_at=command.expires_at, state=state.value, next_attempt_at=now,
        last_error=FailReason.EXPIRED.value if final else None, created_at=now,
    )


# --- Placement: leased to the dispatcher or queued -------------------------------------------


class DirectSend(Protocol):
    """The dispatcher, as the recording handlers see it: it sends rows leased to it on arrival."""

    lease_s: float
    worker_id: str

    def room(self) -> int: ...

    def preferred_gateway(self) -> str | None: ...

    def accept(self, leased: list[Delivery]) -> None: ...

    def wake(self) -> None: ...


@dataclass
class Placed:
    """What one recording transaction placed."""

    leased: list[Delivery] = field(default_factory=list)  # to hand to the dispatcher
    queued: int = 0  # left for the next claim
    expired: list[str] = field(default_factory=list)  # channels of codes expired on arrival


@dataclass(frozen=True)
class Placement:
    room: int = 0
    lease_until: datetime | None = None
    worker_id: str | None = None
    gateway: str | None = None

    @classmethod
    def of(cls, direct: DirectSend | None, now: datetime) -> Placement:
        if direct is None:
            return cls()
        return cls(room=direct.room(), lease_until=now + timedelta(seconds=direct.lease_s),
                   worker_id=direct.worker_id, gateway=direct.preferred_gateway())

    def place(self, row: NewDelivery, placed: Placed) -> NewDelivery:
        if len(placed.leased) >= self.room:
            placed.queued += 1
            return row
        sms = row.channel == "sms"
        row = replace(row, state=DeliveryState.SENDING.value, attempts=1,
                      lease_until=self.lease_until, leased_by=self.worker_id,
                      gateway=self.gateway if sms else None)
        placed.leased.append(row.as_delivery(gateway_fresh=sms))
        return row

    @staticmethod
    def hand_over(direct: DirectSend | None, placed: Placed) -> None:
        """After the commit: the leased rows to the dispatcher, and a wake-up for the queued."""
        if direct is not None:
            direct.accept(placed.leased)
            if placed.queued:
                direct.wake()
