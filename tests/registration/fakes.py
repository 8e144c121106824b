"""In-memory doubles of registration's ports (unit tests)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Collection, Sequence
from typing import TypeVar

from services.common.codec import WireRecord
from services.registration.domain.model import Account, Erasure
from services.registration.service_layer.ports import AccountRepository

T = TypeVar("T")


class FakeAccountRepository:
    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.processed: set[uuid.UUID] = set()
        self.staged: list[tuple[str, WireRecord]] = []
        self.erased: dict[str, Erasure] = {}

    def seen(self, event_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        return set(event_ids) & self.processed

    def by_contracts(self, numbers: Collection[str]) -> dict[str, Account]:
        return {n: copy.deepcopy(self.accounts[n]) for n in numbers if n in self.accounts}

    def active_holders(self, login_keys: Collection[str]) -> dict[str, str]:
        return {a.login_key: a.contract_number for a in self.accounts.values()
                if a.active and a.login_key in login_keys}

    def save(self, accounts: Sequence[Account]) -> None:
        for account in accounts:
            self.accounts[account.contract_number] = copy.deepcopy(account)
        active = [a.login_key for a in self.accounts.values() if a.active]
        assert len(active) == len(set(active)), "two active accounts share a login"

    def mark_processed(self, event_ids: Collection[uuid.UUID]) -> None:
        self.processed.update(event_ids)

    def erasures(self, numbers: Collection[str]) -> dict[str, Erasure]:
        return {n: self.erased[n] for n in numbers if n in self.erased}

    def erase(self, erased: Sequence[Account], markers: Sequence[Erasure]) -> None:
        for account in erased:
            del self.accounts[account.contract_number]
        self.erased.update((m.contract_number, m) for m in markers)

    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        self.staged.extend((topic, r) for r in records)


class FakeUnitOfWork:
    """Commits by keeping the repository's state; a failing ``work`` leaves it as it was."""

    def __init__(self) -> None:
        self.repo = FakeAccountRepository()

    async def run(self, work: Callable[[AccountRepository], T]) -> T:
        attempt = copy.deepcopy(self.repo)
        result = work(attempt)
        self.repo = attempt
        return result
