"""Ports of the notifier's service layer: the gateways, the repositories of one transaction, the
unit of work that runs and commits it, and the clock. Adapters: ``services.notifier.adapters``;
in-memory doubles: ``tests.notifier.fakes``."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from services.common.codec import WireRecord
from services.notifier.domain.messages import OutgoingMessage
from services.notifier.domain.model import Delivery, DeliveryUpdate, NewDelivery, SendResult

T = TypeVar("T")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class NotificationGateway(Protocol):
    """Sends one message. Never raises for a gateway's answer or a network error: classifies it."""

    async def start(self) -> None: ...

    async def send(self, message: OutgoingMessage) -> SendResult: ...

    async def close(self) -> None: ...


class Deliveries(Protocol):
    """Delivery rows (one per code, or per contact of a notice), in one transaction."""

    def existing(self, code_ids: Collection[str]) -> set[str]:
        """The ids among ``code_ids`` that already have a row."""
        ...

    def add(self, rows: Sequence[NewDelivery]) -> None: ...

    def claim_due(
        self, *, now: datetime, lease_until: datetime, limit: int, worker_id: str = "",
        stale_before: datetime | None = None, gateway: str | None = None,
    ) -> list[Delivery]:
        """Due rows (queued or retry, ``next_attempt_at`` passed), and rows ``sending`` whose lease
        ran out or whose worker's heartbeat is older than ``stale_before`` (``resumed``), leased
        to ``worker_id`` with one more attempt; an unpinned SMS row is pinned to ``gateway``."""
        ...

    def repin(self, *, code_id: str, attempts: int, gateway: str) -> bool:
        """Moves the pin of attempt ``attempts`` before its call; False if the row moved on."""
        ...

    def finish(self, updates: Sequence[DeliveryUpdate], now: datetime) -> list[DeliveryUpdate]:
        """Writes the updates whose row is still at that attempt and not final; returns them
        (a stale writer changes nothing). A final row loses its sealed fields."""
        ...

    def by_message_id(self, message_id: str) -> list[tuple[Delivery, str | None]]:
        """The SMS deliveries a gateway accepted as ``message_id`` (each gateway numbers its own,
        so there may be two; an email is never one), each with its destination prefix; locked
        until the transaction ends, so that two reports of one message are applied one after the
        other."""
        ...

    def set_carrier_status(self, code_id: str, status: str, now: datetime) -> bool:
        """Whether the delivery was still there to take it (an erasure may have come between)."""
        ...

    def park_report(self, message_id: str, status: str, now: datetime, *, limit: int) -> bool:
        """Keeps a report whose message id no delivery has yet; a later one of the id replaces it.
        ``False`` (nothing kept) when ``limit`` reports of other ids are kept already."""
        ...

    def take_parked(self, message_ids: Collection[str]) -> dict[str, str]:
        """The parked reports of these message ids (id → status), no longer kept."""
        ...

    def status_keys(self, account_ids: Collection[str]) -> set[str]:
        """The distinct keys (public code ids) of the statuses of the accounts' deliveries."""
        ...

    def erase(self, account_ids: Collection[str]) -> int:
        """Deletes the accounts' deliveries; returns how many."""
        ...


class Workers(Protocol):
    """Heartbeats of the running workers: a lease held by a silent worker may be taken over."""

    def beat(self, *, worker_id: str, now: datetime) -> None: ...

    def forget(self, *, before: datetime) -> None:
        """Drops workers silent since ``before`` that hold no lease any more."""
        ...


class ProcessedEvents(Protocol):
    def claim_new(self, event_ids: Sequence[str]) -> set[str]:
        """Marks the events processed; returns those not seen before (in this transaction)."""
        ...


class Outbox(Protocol):
    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        """Adds records for ``topic``, published once the transaction has committed."""
        ...


class Transaction(Protocol):
    """The repositories of one transaction."""

    @property
    def deliveries(self) -> Deliveries: ...

    @property
    def workers(self) -> Workers: ...

    @property
    def processed(self) -> ProcessedEvents: ...

    @property
    def outbox(self) -> Outbox: ...


class UnitOfWork(Protocol):
    async def run(self, work: Callable[[Transaction], T]) -> T:
        """Runs ``work`` in ONE transaction (off the event loop); commits if it returns."""
        ...

    def transient(self, exc: BaseException) -> bool:
        """Is ``exc`` worth retrying the transaction for (the database away or busy)?"""
        ...
