"""The rules applied to one batch: order, staleness, login conflicts, open / re-link / close.

A ``Registry`` holds the accounts of the batch's contracts and the active holders of the logins
the batch mentions (both loaded in one go by the caller), applies the commands in the order
given (the caller sorts by ``occurred_at``) and reports what must be saved and published.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from schemas.events import ContractRejectReason
from services.registration.domain.commands import EraseContract, TerminateContract
from services.registration.domain.model import Account, Erasure, Outcome, ProtectedLink, Protector

Ending = TypeVar("Ending", TerminateContract, EraseContract)


def fresh_commands(ordered: Sequence[Ending], seen: Collection[uuid.UUID]) -> dict[uuid.UUID, Ending]:
    """The commands not processed before (``seen``), each event once, in the order given."""
    fresh: dict[uuid.UUID, Ending] = {}
    for command in ordered:
        if command.event_id not in seen:
            fresh.setdefault(command.event_id, command)
    return fresh


@dataclass(frozen=True, kw_only=True)
class Rejection:
    contract_number: str
    event_id: uuid.UUID
    reason: ContractRejectReason


class Registry:
    def __init__(
        self,
        *,
        accounts: dict[str, Account],
        holders: dict[str, str],
        protector: Protector,
        new_id: Callable[[], uuid.UUID] = uuid.uuid4,
        erasures: dict[str, Erasure] | None = None,
        alias_holders: dict[str, set[str]] | None = None,
    ) -> None:
        self.accounts = accounts  # contract_number → account
        self.erasures = erasures or {}  # contract_number → what remains of an erased contract
        self.holders = holders  # login_key → contract_number of the ACTIVE account holding it
        # alias_key → contract_numbers of the ACTIVE accounts whose personal account reads as
        # that mobile (``ProtectedLink.alias_key``)
        self.alias_holders = alias_holders if alias_holders is not None else {}
        self.protector = protector
        self.new_id = new_id
        self.rejections: list[Rejection] = []
        self.outcomes: Counter[Outcome] = Counter()
        self._versions = {number: a.version for number, a in accounts.items()}
        self._dirty: dict[str, Account] = {}
        self._erased: list[Account] = []
        self._new_erasures: dict[str, Erasure] = {}

    def link(self, link: ProtectedLink) -> Outcome:
        number = link.contract_number
        account = self.accounts.get(number)
        if account is not None and not account.is_newer(link.occurred_at):
            return self._count(Outcome.STALE)
        erased = self.erasures.get(number)
        if account is None and erased is not None and link.occurred_at <= erased.erased_at:
            return self._count(Outcome.STALE)  # older than the erasure: its data stays erased
        if self._conflicts(link):
            return self.reject(number, link.event_id, ContractRejectReason.LOGIN_CONFLICT)
        if account is None:
            account_id = self.new_id()
            account = Account.open(
                account_id=account_id, link=link, contacts=self.protector.seal(account_id, link.link)
            )
            self.accounts[number] = account
            outcome = Outcome.CREATED
        else:
            if account.active:
                self._release(account)
            current = account
            outcome = account.relink(link, lambda: self.protector.seal(current.account_id, link.link))
        self.holders[account.login_key] = number
        if account.alias_key is not None:
            self.alias_holders.setdefault(account.alias_key, set()).add(number)
        self._dirty[number] = account
        return self._count(outcome)

    def _conflicts(self, link: ProtectedLink) -> bool:
        """Whether another active account holds the login, or a login that reads the same when
        typed: a personal account whose digits are also a mobile (``89161110003``) reaches the
        account with that mobile too, so neither may be linked while the other is active."""
        number = link.contract_number
        keys = [link.login_key] if link.alias_key is None else [link.login_key, link.alias_key]
        if any(self.holders.get(key, number) != number for key in keys):
            return True
        return any(other != number for other in self.alias_holders.get(link.login_key, ()))

    def _release(self, account: Account) -> None:
        """The active ``account`` gives up its login (and alias) in this batch's view."""
        number = account.contract_number
        if self.holders.get(account.login_key) == number:
            del self.holders[account.login_key]
        if account.alias_key is not None:
            self.alias_holders.get(account.alias_key, set()).discard(number)

    def end_each(self, fresh: Iterable[Ending], *, duplicates: int, not_after: datetime,
                 end: Callable[[Ending], Outcome]) -> None:
        """Counts the batch's ``duplicates``, refuses a command dated after ``not_after``
        (``invalid_event_time``) and ends the others' contracts with ``end`` (``terminate`` or
        ``erase``), in order."""
        for _ in range(duplicates):
            self.duplicate()
        for command in fresh:
            if command.occurred_at > not_after:
                self.reject(command.contract_number, command.event_id,
                            ContractRejectReason.INVALID_EVENT_TIME)
            else:
                end(command)

    def terminate(self, command: TerminateContract) -> Outcome:
        number = command.contract_number
        account = self.accounts.get(number)
        if account is None and number in self.erasures:  # erased: nothing is kept to close
            return self._count(Outcome.UNCHANGED)
        if account is None:
            return self.reject(number, command.event_id, ContractRejectReason.UNKNOWN_CONTRACT)
        outcome = account.close(command.occurred_at)
        if outcome is not Outcome.STALE:
            self._release(account)
            self._dirty[number] = account
        return self._count(outcome)

    def erase(self, command: EraseContract) -> Outcome:
        """Always erases what is kept (it is the subscriber's right, whatever the order of
        events); the marker's time is the newest event seen, so nothing already applied can be
        brought back by a redelivery. A contract never linked gets a marker too. An erasure not
        newer than the contract's marker was carried out already: read again once its event id
        is pruned, it leaves a later re-link's account (a new holder's, perhaps) alone."""
        number = command.contract_number
        before = self.erasures.get(number)
        if before is not None and command.occurred_at <= before.erased_at:
            return self._count(Outcome.UNCHANGED)
        account = self.accounts.pop(number, None)
        if account is None:
            self._mark(Erasure(contract_number=number,
                               account_id=before.account_id if before else None,
                               erased_at=command.occurred_at))
            return self._count(Outcome.UNCHANGED)
        self._dirty.pop(number, None)
        self._release(account)
        self._erased.append(account)
        newest = [command.occurred_at, account.last_event_at]
        if before is not None:
            newest.append(before.erased_at)
        self._mark(Erasure(contract_number=number, account_id=account.account_id,
                           erased_at=max(newest)))
        return self._count(Outcome.ERASED)

    def _mark(self, erasure: Erasure) -> None:
        self.erasures[erasure.contract_number] = erasure
        self._new_erasures[erasure.contract_number] = erasure

    def to_erase(self) -> list[Account]:
        """Accounts to delete (and tombstone) in this batch."""
        return list(self._erased)

    def new_erasures(self) -> list[Erasure]:
        return list(self._new_erasures.values())

    def reject(self, number: str, event_id: uuid.UUID, reason: ContractRejectReason) -> Outcome:
        self.rejections.append(Rejection(contract_number=number, event_id=event_id, reason=reason))
        return self._count(Outcome.REJECTED)

    def duplicate(self) -> Outcome:
        return self._count(Outcome.DUPLICATE)

    def to_save(self) -> list[Account]:
        """Accounts whose row changed (a newer event seen counts, even with the same content)."""
        return list(self._dirty.values())

    def to_publish(self) -> list[Account]:
        """Accounts whose state changed: their final state in this batch, one per account."""
        return [a for n, a in self._dirty.items() if a.version != self._versions.get(n)]

    def _count(self, outcome: Outcome) -> Outcome:
        self.outcomes[outcome] += 1
        return outcome
