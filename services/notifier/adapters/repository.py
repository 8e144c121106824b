"""The notifier's ``Sql*`` adapters of ``service_layer.ports``, over SQLAlchemy Core.

- **Deliveries**: ``SqlDeliveries``, the deliveries port, bound to one session (sync; run inside
  ``Database.run`` by ``SqlUnitOfWork``).
- **The unit of work**: one unit of work = one ``Database.run`` = one transaction in the database
  thread, with the repositories of ``service_layer.ports`` (``SqlDeliveries``, ``SqlWorkers``,
  ``SqlProcessedEvents``, the shared ``SqlOutbox``) bound to its session.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Update,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from services.common.db import (
    RepositoryUnitOfWork,
    SqlOutbox,
    any_of,
    chunks,
    claim_events,
    insert_rows,
    is_postgres,
    is_transient,
    one_of,
    unnest_columns,
)
from services.notifier.adapters.tables import (
    deliveries,
    early_reports,
    outbox,
    processed_events,
    workers,
)
from services.notifier.domain.model import Delivery, DeliveryState, DeliveryUpdate, NewDelivery, as_utc

# --- Deliveries ------------------------------------------------------------------------------

_FINAL = (DeliveryState.SENT.value, DeliveryState.FAILED.value)
# what a Delivery needs (fewer timestamps to parse on SQLite, the hot path of every claim)
_COLUMNS = [deliveries.c[name] for name in (
    "code_id", "request_event_id", "channel", "locale", "destination_masked", "destination_enc",
    "password_enc", "expires_at", "state", "attempts", "skipped", "message_id", "carrier_status", "kind",
    "status_code_id", "gateway",
)]
_SMS = "sms"
_NEW = tuple(f.name for f in fields(NewDelivery))


def _delivery(row: Any, **changes: Any) -> Delivery:
    fields = dict(
        code_id=row.code_id, request_event_id=row.request_event_id, channel=row.channel,
        locale=row.locale, destination_masked=row.destination_masked,
        destination_enc=row.destination_enc, password_enc=row.password_enc,
        expires_at=as_utc(row.expires_at), state=row.state, attempts=row.attempts,
        skipped=row.skipped,
        message_id=row.message_id, carrier_status=row.carrier_status, kind=row.kind,
        status_code_id=row.status_code_id, gateway=row.gateway,
    )
    fields.update(changes)
    return Delivery(**fields)


# The statements of every delivery, built once (``services.common.db.any_of``).


@functools.cache
def _existing_query(postgres: bool) -> Select[Any]:
    return select(deliveries.c.code_id).where(any_of(deliveries.c.code_id, "ids", postgres))


@functools.cache
def _due_query(dead_workers: bool, postgres: bool) -> Select[Any]:
    """Due rows: queued or retrying and due at ``:now``, or ``sending`` with a lost lease (ended
    at ``:now``, or, with ``dead_workers``, held by another worker than ``:worker`` that stopped
    beating before ``:stale_before``); the oldest ``:limit``."""
    lost = deliveries.c.lease_until <= bindparam("now")
    if dead_workers:
        dead = select(workers.c.worker_id).where(workers.c.heartbeat_at < bindparam("stale_before"),
                                                 workers.c.worker_id != bindparam("worker"))
        lost = or_(lost, deliveries.c.leased_by.in_(dead.scalar_subquery()))
    due = or_(
        and_(deliveries.c.state.in_([DeliveryState.QUEUED.value, DeliveryState.RETRY.value]),
             deliveries.c.next_attempt_at <= bindparam("now")),
        and_(deliveries.c.state == DeliveryState.SENDING.value, lost),
    )
    query = (select(*_COLUMNS).where(due).order_by(deliveries.c.next_attempt_at)
             .limit(bindparam("limit")))
    return query.with_for_update(skip_locked=True) if postgres else query


@functools.cache
def _lease_update(postgres: bool) -> Update:
    """The claimed rows ``sending``, leased to ``:worker`` until ``:lease``; an SMS row not yet
    pinned to a gateway pinned to ``:pin``."""
    pin = case((deliveries.c.channel == _SMS,
                func.coalesce(deliveries.c.gateway, bindparam("pin", type_=String))), else_=None)
    return (update(deliveries).where(any_of(deliveries.c.code_id, "ids", postgres))
            .values(state=DeliveryState.SENDING.value, lease_until=bindparam("lease"),
                    leased_by=bindparam("worker"), attempts=deliveries.c.attempts + 1,
                    updated_at=bindparam("stamp"), gateway=pin))


@functools.cache
def _attempts_query(postgres: bool) -> Select[Any]:
    query = (select(deliveries.c.code_id, deliveries.c.attempts, deliveries.c.state)
             .where(any_of(deliveries.c.code_id, "ids", postgres)))
    return query.with_for_update() if postgres else query


class SqlDeliveries:
    def __init__(self, session: Session) -> None:
        self.session = session

    def existing(self, code_ids: Collection[str]) -> set[str]:
        found: set[str] = set()
        query = _existing_query(is_postgres(self.session))
        for part in chunks(self.session, code_ids):
            found.update(self.session.scalars(query, {"ids": part}))
        return found

    def add(self, rows: Sequence[NewDelivery]) -> None:
        insert_rows(self.session, deliveries, [
            {**{name: getattr(r, name) for name in _NEW}, "updated_at": r.created_at} for r in rows])

    def claim_due(
        self, *, now: datetime, lease_until: datetime, limit: int,
        worker_id: str = "", stale_before: datetime | None = None, gateway: str | None = None,
    ) -> list[Delivery]:
        """Due rows, and rows whose lease expired or whose worker stopped beating (it died
        mid-send), marked ``sending`` and leased to ``worker_id``. An SMS row not yet pinned to a
        gateway is pinned to ``gateway`` in the same update, before any call. A worker is never
        dead to itself: its own heartbeat may be late (the database was away) while it still
        holds the row's send or its unrecorded answer."""
        postgres = is_postgres(self.session)
        rows = list(self.session.execute(
            _due_query(stale_before is not None, postgres),
            {"now": now, "limit": limit, "stale_before": stale_before, "worker": worker_id}))
        if not rows:
            return []
        lease = _lease_update(postgres)
        for part in chunks(self.session, [r.code_id for r in rows]):
            self.session.execute(lease, {"ids": part, "lease": lease_until, "worker": worker_id,
                                         "stamp": now, "pin": gateway})
        return [_delivery(
            r, attempts=r.attempts + 1, state=DeliveryState.SENDING.value,
            resumed=r.state == DeliveryState.SENDING.value,
            gateway=(r.gateway or gateway) if r.channel == _SMS else None,
            gateway_fresh=r.channel == _SMS and r.gateway is None,
        ) for r in rows]

    def repin(self, *, code_id: str, attempts: int, gateway: str) -> bool:
        """Moves a fresh pin to the other gateway before the call; False if the row moved on."""
        result = self.session.execute(
            update(deliveries)
            .where(deliveries.c.code_id == code_id, deliveries.c.attempts == attempts,
                   deliveries.c.state == DeliveryState.SENDING.value)
            .values(gateway=gateway)
        )
        return bool(getattr(result, "rowcount", 0))

    def finish(self, outcomes: Sequence[DeliveryUpdate], now: datetime) -> list[DeliveryUpdate]:
        """Writes updates whose row is still that attempt's lease (state ``sending``, same
        attempt count): a stale writer, or the same update written again (a stop that cancelled
        the wait for a transaction which then committed), changes nothing.

        One guarded read, and one statement per new state whatever the batch size (PostgreSQL:
        an ``UPDATE ... FROM unnest(...)``; SQLite: an ``executemany``).
        """
        if not outcomes:
            return []
        current: dict[str, tuple[int, str]] = {}
        postgres = is_postgres(self.session)
        query = _attempts_query(postgres)
        for part in chunks(self.session, [o.code_id for o in outcomes]):
            current.update((r.code_id, (r.attempts, r.state))
                           for r in self.session.execute(query, {"ids": part}))
        fresh = [o for o in outcomes
                 if current.get(o.code_id) == (o.attempts, DeliveryState.SENDING.value)]
        for state in {o.state for o in fresh}:
            group = [o for o in fresh if o.state == state]
            columns: dict[str, list[Any]] = {
                "code_id": [o.code_id for o in group],
                "last_error": [o.error or o.reason for o in group],
                "gateway": [o.gateway for o in group],
                "skipped": [0 if o.called else 1 for o in group],
            }
            if state == DeliveryState.RETRY.value:
                columns["next_attempt_at"] = [o.next_attempt_at for o in group]
            if state == DeliveryState.SENT.value:
                columns["message_id"] = [o.message_id for o in group]
                columns["destination_prefix"] = [o.prefix for o in group]
            new: dict[str, ColumnElement[Any]]
            if postgres:  # one statement: the new values as arrays, joined by code id
                source = unnest_columns(deliveries, columns)
                new = {name: source.c[name] for name in columns}
            else:  # one statement run once per row
                new = {name: bindparam(f"b_{name}") for name in columns}
            values: dict[str, Any] = {
                "state": state, "updated_at": now, "lease_until": None,
                **{name: new[name] for name in columns if name not in ("code_id", "skipped")},
                "skipped": deliveries.c.skipped + new["skipped"],
            }
            if state in _FINAL:
                values.update(destination_enc=None, password_enc=None)
            statement = update(deliveries).where(deliveries.c.code_id == new["code_id"]).values(**values)
            if postgres:
                self.session.execute(statement)
            else:
                names = [f"b_{name}" for name in columns]
                self.session.execute(statement, [dict(zip(names, row, strict=True))
                                                 for row in zip(*columns.values(), strict=True)])
        return fresh

    def by_message_id(self, message_id: str) -> list[tuple[Delivery, str | None]]:
        """The SMS deliveries with this message id, each with its destination prefix (locked):
        a report comes from an SMS gateway, so an email's Message-ID never matches it."""
        query = (select(*_COLUMNS, deliveries.c.destination_prefix)
                 .where(deliveries.c.message_id == message_id, deliveries.c.channel == _SMS)
                 .limit(2))
        if is_postgres(self.session):
            query = query.with_for_update()
        return [(_delivery(row), row.destination_prefix) for row in self.session.execute(query)]

    def set_carrier_status(self, code_id: str, status: str, now: datetime) -> bool:
        result = self.session.execute(
            update(deliveries).where(deliveries.c.code_id == code_id)
            .values(carrier_status=status, updated_at=now)
        )
        return bool(getattr(result, "rowcount", 0))

    def park_report(self, message_id: str, status: str, now: datetime, *, limit: int) -> bool:
        kept = self.session.execute(select(func.count()).select_from(early_reports)).scalar_one()
        if kept >= limit and self.session.execute(select(early_reports.c.message_id).where(
                early_reports.c.message_id == message_id)).first() is None:
            return False
        insert = postgres_insert if is_postgres(self.session) else sqlite_insert
        statement = insert(early_reports).values(message_id=message_id, status=status,
                                                 received_at=now)
        self.session.execute(statement.on_conflict_do_update(
            index_elements=[early_reports.c.message_id],
            set_={"status": status, "received_at": now}))
        return True

    def take_parked(self, message_ids: Collection[str]) -> dict[str, str]:
        parked: dict[str, str] = {}
        for condition in one_of(self.session, early_reports.c.message_id, list(message_ids)):
            parked.update((row.message_id, row.status) for row in self.session.execute(
                delete(early_reports).where(condition)
                .returning(early_reports.c.message_id, early_reports.c.status)))
        return parked

    def status_keys(self, account_ids: Collection[str]) -> set[str]:
        if not account_ids:
            return set()
        key = func.coalesce(deliveries.c.status_code_id, deliveries.c.code_id)
        rows = self.session.execute(
            select(key).distinct().where(deliveries.c.account_id.in_(list(account_ids))))
        return {str(k) for (k,) in rows}

    def erase(self, account_ids: Collection[str]) -> int:
        if not account_ids:
            return 0
        result = self.session.execute(
            delete(deliveries).where(deliveries.c.account_id.in_(list(account_ids))))
        return int(getattr(result, "rowcount", 0) or 0)


# --- The unit of work and the other repositories of one transaction --------------------------


class SqlWorkers:
    def __init__(self, session: Session) -> None:
        self.session = session

    def beat(self, *, worker_id: str, now: datetime) -> None:
        """Registers or refreshes a worker's heartbeat."""
        done = self.session.execute(update(workers).where(workers.c.worker_id == worker_id)
                                    .values(heartbeat_at=now))
        if not getattr(done, "rowcount", 0):
            self.session.execute(
                workers.insert().values(worker_id=worker_id, started_at=now, heartbeat_at=now))

    def forget(self, *, before: datetime) -> None:
        holding = select(deliveries.c.leased_by).where(
            deliveries.c.state == DeliveryState.SENDING.value, deliveries.c.leased_by.is_not(None))
        self.session.execute(delete(workers).where(
            workers.c.heartbeat_at < before, workers.c.worker_id.not_in(holding.scalar_subquery())))


class SqlProcessedEvents:
    def __init__(self, session: Session) -> None:
        self.session = session

    def claim_new(self, event_ids: Sequence[str]) -> set[str]:
        return claim_events(self.session, processed_events, event_ids)


class SqlTransaction:
    def __init__(self, session: Session) -> None:
        self.deliveries = SqlDeliveries(session)
        self.workers = SqlWorkers(session)
        self.processed = SqlProcessedEvents(session)
        self.outbox = SqlOutbox(session, outbox)


class SqlUnitOfWork(RepositoryUnitOfWork[SqlTransaction]):
    """One ``Database.run`` = one transaction over the repositories of one ``SqlTransaction``."""

    repository = SqlTransaction

    def transient(self, exc: BaseException) -> bool:
        return is_transient(exc)
