"""Ports of the service layer: the account repository (one transaction), the unit of work and
the linker; and support's repository and unit of work (key rotation, identity checks)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from services.common.codec import WireRecord
from services.registration.domain.commands import LinkContract
from services.registration.domain.model import Account, Erasure, Outcome

T = TypeVar("T")


class AccountRepository(Protocol):
    """Set-based access to accounts, bound to one transaction."""

    def claim(self, event_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        """Record ``event_ids`` as processed in this transaction; returns those not processed
        before (the others are duplicates)."""
        ...

    def hold_contracts(self, numbers: Collection[str]) -> None:
        """Hold these contracts until the transaction ends: a link batch, a termination, an
        erasure or a reseal of one of them in another transaction (the linking process, the
        worker's database thread, another worker) waits until then. Called before their
        accounts and erasure markers are read, so that none of them writes over what another
        committed after its read (a row that does not exist yet included)."""
        ...

    def by_contracts(self, numbers: Collection[str]) -> dict[str, Account]: ...

    def active_holders(self, login_keys: Collection[str]) -> dict[str, str]:
        """login_key → contract_number, for the ACTIVE accounts holding one of ``login_keys``."""
        ...

    def hold(self, keys: Collection[str]) -> None:
        """Hold ``keys`` (the mobiles the batch's logins read as) until the transaction ends:
        another transaction holding one of them waits until then. Called before the holders are
        read, so two workers cannot both miss a conflict that no unique index can see."""
        ...

    def alias_holders(self, login_keys: Collection[str]) -> dict[str, set[str]]:
        """alias_key → contract_numbers, for the ACTIVE accounts whose ``alias_key`` (a personal
        account read as a mobile) is one of ``login_keys``."""
        ...

    def save(self, accounts: Sequence[Account]) -> None:
        """Insert new accounts and update loaded ones (final state of the batch)."""
        ...

    def erasures(self, numbers: Collection[str]) -> dict[str, Erasure]:
        """contract_number → its erasure marker, for those of ``numbers`` that were erased."""
        ...

    def erase(self, erased: Sequence[Account], markers: Sequence[Erasure],
              counted: Collection[str] = ()) -> None:
        """Delete the accounts (every personal field goes with the row) and support's
        identity-check counts of them: per account, per mobile (``mobile_key``) and the
        ``counted`` subjects; store the markers."""
        ...

    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        """Add records to the outbox, published after the commit."""
        ...


class Linker(Protocol):
    """Runs ``link_contracts``: each call one transaction, run in the order of the calls."""

    def link(self, commands: Sequence[LinkContract],
             not_after: datetime) -> Awaitable[Counter[Outcome]]:
        """Starts the call now (``settled`` counts it from the moment it is made, not from its
        first step); ``not_after``: a link dated later is refused (``invalid_event_time``)."""
        ...

    async def settled(self) -> None:
        """Returns once every call started before it has ended (committed and handed its rows
        over to the relay, or failed)."""
        ...


class UnitOfWork(Protocol):
    async def run(self, work: Callable[[AccountRepository], T]) -> T:
        """Run ``work`` in ONE transaction (off the event loop); commit if it returns."""
        ...


class SupportRepository(Protocol):
    """What support's operations read and write, bound to one transaction."""

    def accounts_after(self, after: uuid.UUID | None, limit: int, *,
                       lock: bool = True) -> list[Account]:
        """The next ``limit`` accounts by id after ``after``, held until the transaction ends
        unless ``lock`` is false."""
        ...

    def save_sealed(self, accounts: Sequence[Account]) -> None:
        """Write the contacts and version of accounts whose contacts were sealed again."""
        ...

    def active_by_contract(self, contract_number: str) -> list[Account]: ...

    def active_by_mobile_key(self, mobile_key: str) -> list[Account]: ...

    def save_aliases(self, aliases: Sequence[tuple[uuid.UUID, str, str]]) -> set[uuid.UUID]:
        """(account id, its sealed personal account as read, alias key): set ``alias_key`` where
        it is still unset and the account still holds that personal account; the ids set."""
        ...

    def hold(self, keys: Collection[str]) -> None:
        """Until the transaction ends, no link batch judges a login that reads as these mobile
        login keys (``AccountRepository.hold``)."""
        ...

    def hold_contracts(self, numbers: Collection[str]) -> None:
        """As ``AccountRepository.hold_contracts``."""
        ...

    def backfill_done(self, name: str) -> bool:
        """Whether the one-time fill ``name`` was completed in this database."""
        ...

    def mark_backfill_done(self, name: str) -> None: ...

    def take_attempts(self, subjects: Sequence[str], *, max_events: int, window_s: float,
                      now: float) -> int | None:
        """Count one identity check of each of ``subjects`` if each has fewer than
        ``max_events`` counted in the last ``window_s`` seconds: None; otherwise count none, and
        the seconds until the first without room has room (simultaneous checks on any number of
        workers take their turns)."""
        ...

    def prune_attempts(self, before: float) -> None:
        """Forget the checks that left their window before ``before``."""
        ...

    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        """Add records to the outbox, published after the commit."""
        ...


class SupportUnitOfWork(Protocol):
    async def run(self, work: Callable[[SupportRepository], T]) -> T:
        """Run ``work`` in ONE transaction (off the event loop); commit if it returns, then hand
        what it staged to the relay."""
        ...
