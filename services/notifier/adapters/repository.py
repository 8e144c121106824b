"""SQL access to deliveries (SQLAlchemy Core, sync; called inside ``Database.run``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from services.common.dedupe import already_processed, mark_processed
from services.notifier.adapters.tables import deliveries, processed_events, workers
from services.notifier.domain.delivery import Delivery, Outcome, as_utc
from services.notifier.domain.model import DeliveryState

_FINAL = (DeliveryState.SENT.value, DeliveryState.FAILED.value)
# what a Delivery needs (fewer timestamps to parse on SQLite, the hot path of every claim)
_COLUMNS = [deliveries.c[name] for name in (
    "code_id", "request_event_id", "channel", "locale", "destination_masked", "destination_enc",
    "password_enc", "expires_at", "state", "attempts", "message_id", "carrier_status", "kind",
    "status_code_id", "gateway",
)]
_SMS = "sms"


def _delivery(row: Any, **changes: Any) -> Delivery:
    fields = dict(
        code_id=row.code_id, request_event_id=row.request_event_id, channel=row.channel,
        locale=row.locale, destination_masked=row.destination_masked,
        destination_enc=row.destination_enc, password_enc=row.password_enc,
        expires_at=as_utc(row.expires_at), state=row.state, attempts=row.attempts,
        message_id=row.message_id, carrier_status=row.carrier_status, kind=row.kind,
        status_code_id=row.status_code_id, gateway=row.gateway,
    )
    fields.update(changes)
    return Delivery(**fields)


class SqlDeliveries:
    def claim_new_events(self, session: Session, event_ids: Sequence[str]) -> set[str]:
        """Marks events as processed; returns those not seen before (same transaction as the work)."""
        if not event_ids:
            return set()
        seen = already_processed(session, processed_events, event_ids)
        fresh = [e for e in dict.fromkeys(event_ids) if e not in seen]
        mark_processed(session, processed_events, fresh)
        return set(fresh)

    def existing_codes(self, session: Session, code_ids: Sequence[str]) -> set[str]:
        if not code_ids:
            return set()
        return set(session.scalars(select(deliveries.c.code_id).where(deliveries.c.code_id.in_(code_ids))))

    def insert(self, session: Session, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            session.execute(deliveries.insert(), list(rows))

    def claim_due(
        self, session: Session, *, now: datetime, lease_until: datetime, limit: int,
        worker_id: str = "", stale_before: datetime | None = None, gateway: str | None = None,
    ) -> list[Delivery]:
        """Due rows, and rows whose lease expired or whose worker stopped beating (it died
        mid-send), marked ``sending`` and leased to ``worker_id``. An SMS row not yet pinned to a
        gateway is pinned to ``gateway`` in the same update, before any call."""
        lost = deliveries.c.lease_until <= now
        if stale_before is not None:
            dead = select(workers.c.worker_id).where(workers.c.heartbeat_at < stale_before)
            lost = or_(lost, deliveries.c.leased_by.in_(dead.scalar_subquery()))
        due = or_(
            and_(deliveries.c.state.in_([DeliveryState.QUEUED.value, DeliveryState.RETRY.value]),
                 deliveries.c.next_attempt_at <= now),
            and_(deliveries.c.state == DeliveryState.SENDING.value, lost),
        )
        query = select(*_COLUMNS).where(due).order_by(deliveries.c.next_attempt_at).limit(limit)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = list(session.execute(query))
        if not rows:
            return []
        pin = case((deliveries.c.channel == _SMS, func.coalesce(deliveries.c.gateway, gateway)),
                   else_=None)
        session.execute(
            update(deliveries)
            .where(deliveries.c.code_id.in_([r.code_id for r in rows]))
            .values(state=DeliveryState.SENDING.value, lease_until=lease_until, leased_by=worker_id,
                    attempts=deliveries.c.attempts + 1, updated_at=now, gateway=pin)
        )
        return [_delivery(
            r, attempts=r.attempts + 1, state=DeliveryState.SENDING.value,
            resumed=r.state == DeliveryState.SENDING.value,
            gateway=(r.gateway or gateway) if r.channel == _SMS else None,
            gateway_fresh=r.channel == _SMS and r.gateway is None,
        ) for r in rows]

    def repin(self, session: Session, *, code_id: str, attempts: int, gateway: str) -> bool:
        """Moves a fresh pin to the other gateway before the call; False if the row moved on."""
        result = session.execute(
            update(deliveries)
            .where(deliveries.c.code_id == code_id, deliveries.c.attempts == attempts,
                   deliveries.c.state == DeliveryState.SENDING.value)
            .values(gateway=gateway)
        )
        return bool(getattr(result, "rowcount", 0))

    def beat(self, session: Session, *, worker_id: str, now: datetime) -> None:
        """Registers or refreshes a worker's heartbeat."""
        done = session.execute(update(workers).where(workers.c.worker_id == worker_id)
                               .values(heartbeat_at=now))
        if not getattr(done, "rowcount", 0):
            session.execute(workers.insert().values(worker_id=worker_id, started_at=now, heartbeat_at=now))

    def forget_workers(self, session: Session, *, before: datetime) -> None:
        """Drops workers silent since ``before`` that hold no lease any more."""
        holding = select(deliveries.c.leased_by).where(
            deliveries.c.state == DeliveryState.SENDING.value, deliveries.c.leased_by.is_not(None))
        session.execute(delete(workers).where(workers.c.heartbeat_at < before,
                                              workers.c.worker_id.not_in(holding.scalar_subquery())))

    def finish(self, session: Session, outcomes: Sequence[Outcome], now: datetime) -> list[Outcome]:
        """Writes outcomes whose row is still that attempt's (a stale writer changes nothing).

        One guarded read and one ``executemany`` per kind of outcome, whatever the batch size.
        """
        if not outcomes:
            return []
        query = select(deliveries.c.code_id, deliveries.c.attempts, deliveries.c.state).where(
            deliveries.c.code_id.in_([o.code_id for o in outcomes])
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        current = {r.code_id: (r.attempts, r.state) for r in session.execute(query)}
        fresh = [o for o in outcomes
                 if current.get(o.code_id, (None, None))[0] == o.attempts
                 and current[o.code_id][1] not in _FINAL]
        for state in {o.state for o in fresh}:
            group = [o for o in fresh if o.state == state]
            values: dict[str, Any] = {"state": state, "updated_at": now, "lease_until": None,
                                      "last_error": bindparam("b_error"), "gateway": bindparam("b_gateway")}
            if state == DeliveryState.RETRY.value:
                values["next_attempt_at"] = bindparam("b_next")
            if state == DeliveryState.SENT.value:
                values["message_id"] = bindparam("b_message_id")
                values["destination_prefix"] = bindparam("b_prefix")
            if state in _FINAL:
                values.update(destination_enc=None, password_enc=None)
            statement = (update(deliveries)
                         .where(deliveries.c.code_id == bindparam("b_code_id")).values(**values))
            session.execute(statement, [
                {"b_code_id": o.code_id, "b_error": o.error or o.reason, "b_next": o.next_attempt_at,
                 "b_message_id": o.message_id, "b_gateway": o.gateway, "b_prefix": o.prefix}
                for o in group
            ])
        return fresh

    def by_message_id(self, session: Session, message_id: str) -> tuple[Delivery, str | None] | None:
        """The delivery with this message id, and its destination prefix."""
        row = session.execute(select(*_COLUMNS, deliveries.c.destination_prefix)
                              .where(deliveries.c.message_id == message_id)).first()
        return None if row is None else (_delivery(row), row.destination_prefix)

    def set_carrier_status(self, session: Session, code_id: str, status: str, now: datetime) -> None:
        session.execute(
            update(deliveries).where(deliveries.c.code_id == code_id)
            .values(carrier_status=status, updated_at=now)
        )
