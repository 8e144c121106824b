"""Ports of the service layer: the repositories of one transaction and the unit of work that
runs it, the time source, the slow password hash and the publisher.

Every repository is bound to one transaction; ``UnitOfWork.run`` gives a ``Repositories`` to a
function, commits if it returns and hands what it staged in the outbox to the relay.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from services.common.codec import WireRecord
from services.common.logins import LoginKind
from services.recovery.domain.commands import ProjectAccount
from services.recovery.domain.model import Account, LimitKind, LoggedRequest, NewCode, Window

T = TypeVar("T")
RateEvent = tuple[LimitKind, str, float]  # kind, subject (a keyed hash), Unix time


class Clock(Protocol):
    def now(self) -> float:
        """Unix time in seconds."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class PasswordHasher(Protocol):
    async def hash_many(self, passwords: Sequence[str]) -> list[str]:
        """argon2id hashes of ``passwords``, computed concurrently off the event loop."""
        ...

    async def verify_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (hash, password): does the password match? Concurrently, off the loop."""
        ...

    async def dummy_hash(self) -> str:
        """A hash of a random password with the same parameters (unknown logins verify it)."""
        ...


class Sender(Protocol):
    async def send_all(self, items: Sequence[tuple[str, WireRecord]]) -> None:
        """Publish (topic, record) pairs; returns once the broker has them."""
        ...


class Accounts(Protocol):
    """The accounts projection."""

    def by_keys(self, keys: Iterable[Mapping[LoginKind, str]]) -> list[Account]:
        """Every account whose login key of either kind is among ``keys``."""
        ...

    def epochs(self, account_ids: Collection[str]) -> dict[str, tuple[int, int, int]]:
        """account_id → (version, holder_epoch, contacts_epoch) of the stored ones, their rows
        locked until the transaction ends, like ``lock_versions``: every transaction that changes
        an account and its codes or credentials locks the account first."""
        ...

    def insert(self, accounts: Sequence[ProjectAccount], now: float) -> None: ...

    def update(self, account: ProjectAccount, now: float) -> None: ...

    def by_ids(self, account_ids: Collection[str]) -> list[Account]: ...

    def lock_versions(self, account_ids: Collection[str]) -> dict[str, int]:
        """account_id → version of the stored ones, their rows locked until the transaction
        ends: a change of one of them waits for it, or was committed before it."""
        ...

    def delete(self, account_ids: Collection[str]) -> None: ...


class Processed(Protocol):
    """Ids of the code requests already decided and written."""

    def seen(self, event_ids: Collection[str]) -> set[str]: ...

    def mark(self, event_ids: Collection[str]) -> None:
        """Fails the transaction if one of them is already marked (another worker wrote it)."""
        ...


class RateEvents(Protocol):
    """The sliding-window history of code requests."""

    def history(self, kind: LimitKind, subject: str, since: float, newest: int) -> list[float]:
        """The ``newest`` latest event times of a subject after ``since``, oldest first."""
        ...

    def add(self, events: Iterable[RateEvent]) -> None: ...

    def prune(self, before: float) -> None: ...

    def delete_subjects(self, subjects: Collection[str]) -> None: ...


class Windows(Protocol):
    """Sliding-window counts shared by every worker, each taken atomically."""

    def take(self, subject: str, window: Window, now: float) -> int | None:
        """Count one event if fewer than ``window.max_events`` are inside the ``window.window_s``
        seconds up to ``now``: ``None``; else the seconds until the oldest of them leaves."""
        ...

    def peek(self, subject: str, window: Window, now: float) -> int | None:
        """What ``take`` would answer now, counting nothing and locking nothing."""
        ...

    def take_together(self, groups: Sequence[Sequence[tuple[str, Window]]], now: float
                      ) -> list[tuple[int, int] | None]:
        """For each group in order, one event in every window of the group, or in none: ``None``
        when each had room, else (the position in the group of the first without room, the
        seconds until it has room). Safe against other writers taking overlapping groups."""
        ...

    def prune(self, before: float) -> None: ...

    def delete_subjects(self, subjects: Collection[str]) -> None: ...


class FailureCounts(Protocol):
    """The lock-out counts of failed logins (see ``log_in``)."""

    def reserve(self, subject: str, *, limit: int, lock_s: float, now: float,
                login: str | None = None) -> int | None:
        """The next place in the count (1 = first), or ``None``: locked, or every place taken.
        ``login``: the login's own subject, for a count per login and client address."""
        ...

    def release(self, subject: str, place: int, *, limit: int) -> None:
        """A success at ``place``: it and every earlier place are given back."""
        ...

    def touch(self, subject: str, *, now: float) -> None:
        """Runs the reservation's statement on ``subject`` taking no place (a refusal costs as
        much as an attempt)."""
        ...

    def failures(self, subject: str) -> tuple[int, float | None]:
        """(places taken, locked until)."""
        ...

    def locked_addresses(self, login: str, now: float) -> tuple[int, float | None]:
        """(client addresses the login is locked from now, until when the last lock lasts)."""
        ...

    def delete_subjects(self, subjects: Collection[str]) -> None:
        """These counts, and the counts per client address of these logins."""
        ...


class Codes(Protocol):
    def add(self, codes: Sequence[NewCode]) -> None:
        """Store new codes after voiding their accounts' older pending ones."""
        ...

    def newest_pending(self, account_id: str, now: float) -> tuple[str, str] | None:
        """(code_id, hash) of the account's newest pending code that has not expired."""
        ...

    def activate(self, code_id: str, now: float) -> tuple[str, str, str] | None:
        """A pending, unexpired code becomes active: (account id, hash, locale); ``None`` if it
        was not pending. Of simultaneous calls with one code, one activates it."""
        ...

    def void_pending(self, account_id: str, *, except_code: str | None = None) -> None: ...

    def expire(self, now: float) -> None: ...

    def delete_for(self, account_ids: Collection[str]) -> None: ...


class Credentials(Protocol):
    def current(self, account_id: str) -> str | None:
        """The hash of the account's password, if it has one."""
        ...

    def set(self, account_id: str, hash_: str, now: float) -> None: ...

    def delete_for(self, account_ids: Collection[str]) -> None: ...


class RequestLog(Protocol):
    """The last code requests of each login, for support."""

    def record(self, entries: Sequence[LoggedRequest]) -> None: ...

    def prune(self, login_keys: Collection[str], now: float) -> None:
        """Drop old rows, and for ``login_keys`` all but the newest few."""
        ...

    def last(self, login_key: str) -> list[LoggedRequest]:
        """Newest first."""
        ...

    def delete_for(self, account_ids: Collection[str]) -> None: ...

    def delete_logins(self, login_keys: Collection[str]) -> None:
        """Every entry of these logins, whatever account they name (an erasure)."""
        ...


class Outbox(Protocol):
    def stage(self, topic: str, records: Sequence[WireRecord]) -> None:
        """Records for ``topic``, published once the transaction has committed."""
        ...


@dataclass(frozen=True, kw_only=True)
class Repositories:
    """Everything one transaction may read or write."""

    accounts: Accounts
    processed: Processed
    rate_events: RateEvents
    windows: Windows
    failures: FailureCounts
    codes: Codes
    credentials: Credentials
    request_log: RequestLog
    outbox: Outbox


class UnitOfWork(Protocol):
    async def run(self, work: Callable[[Repositories], T]) -> T:
        """Run ``work`` in ONE transaction (off the event loop); commit if it returns, and
        hand the records it staged to the relay."""
        ...

    def transient(self, exc: BaseException) -> bool:
        """Is ``exc`` worth retrying the transaction for (the database away or busy)?"""
        ...
