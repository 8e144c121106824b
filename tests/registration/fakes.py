"""In-memory doubles of registration's ports (unit tests)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Collection, Sequence
from typing import TypeVar

from services.common.codec import WireRecord
from services.registration.domain.model import Account, Erasure
from services.registration.service_layer.ports import AccountRepository, SupportRepository
from tests.support import windows as sliding

T = TypeVar("T")


class FakeAccountRepository:
    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.processed: set[uuid.UUID] = set()
        self.staged: list[tuple[str, WireRecord]] = []
        self.erased: dict[str, Erasure] = {}
        self.backfills: set[str] = set()

    def claim(self, event_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        new = set(event_ids) - self.processed
        self.processed.update(new)
        return new

    def by_contracts(self, numbers: Collection[str]) -> dict[str, Account]:
        return {n: copy.deepcopy(self.accounts[n]) for n in numbers if n in self.accounts}

    def active_holders(self, login_keys: Collection[str]) -> dict[str, str]:
        return {a.login_key: a.contract_number for a in self.accounts.values()
                if a.active and a.login_key in login_keys}

    def hold(self, keys: Collection[str]) -> None:
        self.held = set(keys)  # one unit of work at a time: nothing to wait for

    def hold_contracts(self, numbers: Collection[str]) -> None:
        self.held_contracts = set(numbers)

    def alias_holders(self, login_keys: Collection[str]) -> dict[str, set[str]]:
        self.alias_asked = set(login_keys)
        result: dict[str, set[str]] = {}
        for a in self.accounts.values():
            if a.active and a.alias_key is not None and a.alias_key in login_keys:
                result.setdefault(a.alias_key, set()).add(a.contract_number)
        return result

    def save(self, accounts: Sequence[Account]) -> None:
        for account in accounts:
            self.accounts[account.contract_number] = copy.deepcopy(account)
        active = [a.login_key for a in self.accounts.values() if a.active]
        assert len(active) == len(set(active)), "two active accounts share a login"

    def erasures(self, numbers: Collection[str]) -> dict[str, Erasure]:
        return {n: self.erased[n] for n in numbers if n in self.erased}

    def erase(self, erased: Sequence[Account], markers: Sequence[Erasure],
              counted: Collection[str] = ()) -> None:
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


class FakeSupportRepository:
    """Support's operations over the accounts of a ``FakeAccountRepository``."""

    def __init__(self, accounts: FakeAccountRepository, attempts: dict[str, list[float]]) -> None:
        self.accounts = accounts
        self.attempts = attempts  # subject → when each check counted leaves its window

    def accounts_after(self, after: uuid.UUID | None, limit: int, *,
                       lock: bool = True) -> list[Account]:
        ordered = sorted(self.accounts.accounts.values(), key=lambda a: a.account_id)
        return [copy.deepcopy(a) for a in ordered if after is None or a.account_id > after][:limit]

    def save_sealed(self, accounts: Sequence[Account]) -> None:
        for account in accounts:
            held = self.accounts.accounts[account.contract_number]
            held.contacts, held.version = copy.deepcopy(account.contacts), account.version

    def active_by_contract(self, contract_number: str) -> list[Account]:
        account = self.accounts.accounts.get(contract_number)
        return [copy.deepcopy(account)] if account is not None and account.active else []

    def active_by_mobile_key(self, mobile_key: str) -> list[Account]:
        return sorted((copy.deepcopy(a) for a in self.accounts.accounts.values()
                       if a.active and a.mobile_key == mobile_key), key=lambda a: a.account_id)

    def save_aliases(self, aliases: Sequence[tuple[uuid.UUID, str, str]]) -> set[uuid.UUID]:
        saved: set[uuid.UUID] = set()
        for account_id, sealed, alias_key in aliases:
            for account in self.accounts.accounts.values():
                if (account.account_id == account_id and account.alias_key is None
                        and account.contacts.personal_account_enc == sealed):
                    account.alias_key = alias_key
                    saved.add(account_id)
        return saved

    def hold(self, keys: Collection[str]) -> None:
        self.held = set(keys)  # one unit of work at a time: nothing to wait for

    def hold_contracts(self, numbers: Collection[str]) -> None:
        self.held_contracts = set(numbers)

    def backfill_done(self, name: str) -> bool:
        return name in self.accounts.backfills

    def mark_backfill_done(self, name: str) -> None:
        self.accounts.backfills.add(name)

    def take_attempts(self, subjects: Sequence[str], *, max_events: int, window_s: float,
                      now: float) -> int | None:
        [refused] = sliding.take_together(
            self.attempts, [[(s, max_events, float(window_s)) for s in subjects]], now)
        return None if refused is None else refused[1]

    def prune_attempts(self, before: float) -> None:
        sliding.prune(self.attempts, before)  # in place: the unit of work keeps the dict

    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        self.accounts.stage(topic, records)


class FakeSupportUnitOfWork:
    """Over the same state as ``accounts`` (a ``FakeUnitOfWork``): what support's operations
    change, the handlers see, and the other way round."""

    def __init__(self, accounts: FakeUnitOfWork) -> None:
        self.accounts = accounts
        self.attempts: dict[str, list[float]] = {}

    async def run(self, work: Callable[[SupportRepository], T]) -> T:
        state = copy.deepcopy((self.accounts.repo, self.attempts))
        result = work(FakeSupportRepository(*state))
        self.accounts.repo, self.attempts = state
        return result
