"""Ports of the service layer: the account repository (one transaction), the unit of work and
the preparer of links."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from services.common.codec import WireRecord
from services.registration.domain.commands import LinkContract
from services.registration.domain.model import Account, ProtectedLink
from services.registration.domain.registry import Rejection

T = TypeVar("T")

Prepared = ProtectedLink | Rejection


@dataclass(frozen=True)
class PreparedLinks:
    """Prepared links in the order to apply them and, when the preparer encoded them ahead, the
    ``AccountChanged`` of the account each link would open (its version 1), by that account's
    id: a link applied to no account yet opens exactly that account, under that fresh id."""

    items: list[Prepared]
    opened: dict[uuid.UUID, WireRecord] = field(default_factory=dict)


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

    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        """Add records to the outbox, published after the commit."""
        ...


class Preparer(Protocol):
    async def prepare(self, commands: Sequence[LinkContract]) -> PreparedLinks:
        """``prepare_links(commands, ...)``: validated and protected, in ``occurred_at`` order."""
        ...


class UnitOfWork(Protocol):
    async def run(self, work: Callable[[AccountRepository], T]) -> T:
        """Run ``work`` in ONE transaction (off the event loop); commit if it returns."""
        ...
