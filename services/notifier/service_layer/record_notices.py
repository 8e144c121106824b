"""The stream handler of ``PasswordChanged``: one notice delivery per linked contact.

A notice travels like a code: a ``deliveries`` row (``kind`` ``notice``) written in the batch's
transaction with the event's dedupe row, leased or queued, sent by the dispatcher with the same
retries, failover and leases. Its id, and so its SMS ``client_ref`` and email Message-ID, is
derived from ``(code_id, channel)``: a re-published ``PasswordChanged`` adds nothing. The sealed
destination is kept as received and opened only when sent (associated data
``notice:<event_id>:<channel>``, whose event id is kept in ``request_event_id``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from schemas.events import PasswordChanged
from services.common.consumer_loop import Inbound
from services.common.db import Database
from services.notifier.adapters.repository import SqlDeliveries
from services.notifier.domain.model import DeliveryState
from services.notifier.domain.notices import notice_delivery_id
from services.notifier.service_layer.metrics import NotifierMetrics
from services.notifier.service_layer.record_codes import Clock, Intake, Placement, _Recorded, utc_now


class RecordNotices:
    """``await record_notices(batch)`` — the BatchRunner handler of ``PasswordChanged``.

    A notice is worth sending for ``ttl_s`` after the password change (then ``failed`` /
    ``expired``, like a code).
    """

    def __init__(
        self, *, db: Database, repo: SqlDeliveries, metrics: NotifierMetrics, ttl_s: float,
        intake: Intake | None = None, clock: Clock = utc_now,
    ) -> None:
        self.db, self.repo, self.metrics, self.ttl_s = db, repo, metrics, ttl_s
        self.intake, self.clock = intake, clock

    async def __call__(self, items: list[Inbound[PasswordChanged]]) -> None:
        now = self.clock()
        placement = Placement.of(self.intake, now)
        done = await self.db.run(lambda s: self._record(s, [i.event for i in items], now, placement))
        placement.hand_over(self.intake, done)

    def _record(self, session: Session, events: list[PasswordChanged], now: datetime,
                placement: Placement) -> _Recorded:
        fresh = self.repo.claim_new_events(session, [str(e.event_id) for e in events])
        wanted = [(e, c, notice_delivery_id(str(e.code_id), c.channel.value))
                  for e in events if str(e.event_id) in fresh for c in e.contacts]
        known = self.repo.existing_codes(session, [d for _, _, d in wanted])
        done = _Recorded()
        rows: list[dict[str, Any]] = []
        for event, contact, delivery_id in wanted:
            if delivery_id in known:
                continue  # this code's notice to this channel is already recorded
            known.add(delivery_id)
            expires_at = min(event.occurred_at, now) + timedelta(seconds=self.ttl_s)
            row = {
                "code_id": delivery_id, "request_event_id": str(event.event_id),
                "account_id": str(event.account_id), "channel": contact.channel.value,
                "locale": event.locale.value, "destination_masked": contact.destination_masked,
                "destination_enc": contact.destination_enc, "password_enc": None,
                "expires_at": expires_at, "state": DeliveryState.QUEUED.value, "attempts": 0,
                "next_attempt_at": now, "lease_until": None, "message_id": None,
                "carrier_status": None, "last_error": None, "created_at": now, "updated_at": now,
                "kind": "notice", "status_code_id": str(event.code_id), "gateway": None,
                "leased_by": None,
            }
            rows.append(placement.place(row, done))
        self.repo.insert(session, rows)
        return done
