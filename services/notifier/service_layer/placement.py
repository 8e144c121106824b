"""Where a newly recorded delivery goes: leased at once to this worker's dispatcher while it has
room (state ``sending``, attempt 1, as a claim would leave it, which saves the claim's read and
update), else ``queued`` for the next claim. A leased SMS row is pinned to the preferred gateway."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from services.notifier.domain.delivery import Delivery, NewDelivery
from services.notifier.domain.model import DeliveryState


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
