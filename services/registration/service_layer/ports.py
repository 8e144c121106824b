"""Ports of the service layer: the account repository (one transaction), the unit of work and
the linker."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from services.common.codec import WireRecord
from services.registration.domain.commands import LinkContract
from services.registration.domain.model import Account, Erasure, Outcome

T = TypeVar("T")


class AccountRepository(Protocol):
    """Set-based access to accounts, bound to one transaction."""

    def seen(self, event_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        """The ids among ``event_ids`` already processed."""
        ...

    def by_contracts(self, numbers: Collection[str]) -> dict[str, Account]: ...

    def active_holders(self, login_keys: Collection[str]) -> dict[str, str]:
        """login_key → contract_number, for the ACTIVE accounts holding one of ``login_keys``."""
        ...

    def save(self, accounts: Sequence[Account]) -> None:
        """Insert new accounts and update loaded ones (final state of the batch)."""
        ...

    def mark_processed(self, event_ids: Collection[uuid.UUID]) -> None: ...

    def erasures(self, numbers: Collection[str]) -> dict[str, Erasure]:
        """contract_number → its erasure marker, for those of ``numbers`` that were erased."""
        ...

    def erase(self, erased: Sequence[Account], markers: Sequence[Erasure]) -> None:
        """Delete the accounts (every personal field goes with the row); store the markers."""
        ...

    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        """Add records to the outbox, published after the commit."""
        ...


class Linker(Protocol):
    """Runs ``link_contracts``: each call one transaction, run in the order of the calls."""

    async def link(self, commands: Sequence[LinkContract], not_after: datetime) -> Counter[Outcome]:
        """``not_after``: a link dated later is refused (``invalid_event_time``)."""
        ...


class UnitOfWork(Protocol):
    async def run(self, work: Callable[[AccountRepository], T]) -> T:
        """Run ``work`` in ONE transaction (off the event loop); commit if it returns."""
        ...
