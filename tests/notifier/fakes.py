"""In-memory doubles of the notifier's ports (unit tests): the same decisions as the SQL
adapters, on plain dictionaries."""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

from services.common.codec import WireRecord
from services.notifier.domain.model import Delivery, DeliveryState, DeliveryUpdate, NewDelivery
from services.notifier.service_layer.ports import Transaction

T = TypeVar("T")
_FINAL = (DeliveryState.SENT.value, DeliveryState.FAILED.value)
_DELIVERY = [f.name for f in fields(Delivery) if f.name not in ("gateway_fresh", "resumed")]


@dataclass
class FakeStore:
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # code_id → columns
    heartbeats: dict[str, datetime] = field(default_factory=dict)  # worker_id → last beat
    processed: set[str] = field(default_factory=set)
    parked: dict[str, str] = field(default_factory=dict)  # message_id → status
    outbox: list[tuple[str, WireRecord]] = field(default_factory=list)


def _delivery(row: dict[str, Any], **changes: Any) -> Delivery:
    return Delivery(**{**{name: row[name] for name in _DELIVERY}, **changes})


class FakeDeliveries:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def existing(self, code_ids: Collection[str]) -> set[str]:
        return set(code_ids) & set(self.store.rows)

    def add(self, rows: Sequence[NewDelivery]) -> None:
        for r in rows:
            assert r.code_id not in self.store.rows, "one delivery per id"
            self.store.rows[r.code_id] = {
                **{f.name: getattr(r, f.name) for f in fields(NewDelivery)},
                "skipped": 0, "message_id": None, "carrier_status": None, "destination_prefix": None}

    def claim_due(self, *, now: datetime, lease_until: datetime, limit: int, worker_id: str = "",
                  stale_before: datetime | None = None, gateway: str | None = None) -> list[Delivery]:
        dead = {w for w, beat in self.store.heartbeats.items()
                if stale_before is not None and beat < stale_before and w != worker_id}

        def due(r: dict[str, Any]) -> bool:
            if r["state"] in (DeliveryState.QUEUED.value, DeliveryState.RETRY.value):
                return bool(r["next_attempt_at"] <= now)
            return r["state"] == DeliveryState.SENDING.value and (
                r["lease_until"] <= now or r["leased_by"] in dead)

        claimed = []
        for r in sorted(filter(due, self.store.rows.values()), key=lambda r: r["next_attempt_at"])[:limit]:
            sms, was = r["channel"] == "sms", dict(r)
            r.update(state=DeliveryState.SENDING.value, lease_until=lease_until, leased_by=worker_id,
                     attempts=r["attempts"] + 1, gateway=(r["gateway"] or gateway) if sms else None)
            claimed.append(_delivery(r, resumed=was["state"] == DeliveryState.SENDING.value,
                                     gateway_fresh=sms and was["gateway"] is None))
        return claimed

    def repin(self, *, code_id: str, attempts: int, gateway: str) -> bool:
        r = self.store.rows.get(code_id)
        if r is None or r["attempts"] != attempts or r["state"] != DeliveryState.SENDING.value:
            return False
        r["gateway"] = gateway
        return True

    def finish(self, updates: Sequence[DeliveryUpdate], now: datetime) -> list[DeliveryUpdate]:
        fresh = [u for u in updates if u.code_id in self.store.rows
                 and self.store.rows[u.code_id]["attempts"] == u.attempts
                 and self.store.rows[u.code_id]["state"] == DeliveryState.SENDING.value]
        for u in fresh:
            r = self.store.rows[u.code_id]
            r.update(state=u.state, lease_until=None, last_error=u.error or u.reason, gateway=u.gateway,
                     skipped=r["skipped"] + (0 if u.called else 1))
            if u.state == DeliveryState.RETRY.value:
                r["next_attempt_at"] = u.next_attempt_at
            if u.state == DeliveryState.SENT.value:
                r.update(message_id=u.message_id, destination_prefix=u.prefix)
            if u.state in _FINAL:
                r.update(destination_enc=None, password_enc=None)
        return fresh

    def by_message_id(self, message_id: str) -> list[tuple[Delivery, str | None]]:
        return [(_delivery(r), r["destination_prefix"]) for r in self.store.rows.values()
                if r["message_id"] == message_id and r["channel"] == "sms"][:2]

    def set_carrier_status(self, code_id: str, status: str, now: datetime) -> bool:
        if code_id not in self.store.rows:
            return False
        self.store.rows[code_id]["carrier_status"] = status
        return True

    def park_report(self, message_id: str, status: str, now: datetime, *, limit: int) -> bool:
        if len(self.store.parked) >= limit and message_id not in self.store.parked:
            return False
        self.store.parked[message_id] = status
        return True

    def take_parked(self, message_ids: Collection[str]) -> dict[str, str]:
        return {m: self.store.parked.pop(m) for m in message_ids if m in self.store.parked}

    def status_keys(self, account_ids: Collection[str]) -> set[str]:
        return {r["status_code_id"] or c for c, r in self.store.rows.items()
                if r["account_id"] in account_ids}

    def erase(self, account_ids: Collection[str]) -> int:
        gone = [c for c, r in self.store.rows.items() if r["account_id"] in account_ids]
        for code_id in gone:
            del self.store.rows[code_id]
        return len(gone)


class FakeWorkers:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def beat(self, *, worker_id: str, now: datetime) -> None:
        self.store.heartbeats[worker_id] = now

    def forget(self, *, before: datetime) -> None:
        holding = {r["leased_by"] for r in self.store.rows.values()
                   if r["state"] == DeliveryState.SENDING.value}
        for worker_id, beat in list(self.store.heartbeats.items()):
            if beat < before and worker_id not in holding:
                del self.store.heartbeats[worker_id]


class FakeProcessedEvents:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def claim_new(self, event_ids: Sequence[str]) -> set[str]:
        fresh = set(event_ids) - self.store.processed
        self.store.processed |= fresh
        return fresh


class FakeOutbox:
    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.staged: list[tuple[str, WireRecord]] = []

    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        self.staged.extend((topic, r) for r in records)


class FakeTransaction:
    def __init__(self, store: FakeStore) -> None:
        self.deliveries = FakeDeliveries(store)
        self.workers = FakeWorkers(store)
        self.processed = FakeProcessedEvents(store)
        self.outbox = FakeOutbox(store)


class FakeUnitOfWork:
    """Commits by keeping the transaction's copy of the store; a failing ``work`` leaves the
    store as it was. ``fail_next`` makes the next run raise before any work (database away)."""

    def __init__(self) -> None:
        self.store = FakeStore()
        self.fail_next = 0

    async def run(self, work: Callable[[Transaction], T]) -> T:
        return self.apply(work)

    def transient(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectionError)

    def apply(self, work: Callable[[Transaction], T]) -> T:
        """One transaction: ``work`` on a copy of the store, which replaces it if it succeeds."""
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("database away")
        attempt = copy.deepcopy(self.store)
        tx = FakeTransaction(attempt)
        result = work(tx)
        attempt.outbox.extend(tx.outbox.staged)
        self.store = attempt
        return result
