"""The account: what a contract's latest accepted link says, with personal data protected.

The domain never sees a key: hashing and encryption sit behind the ``Protector`` port, and the
account holds only their results (keyed hashes, sealed contacts, masked copies).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from schemas.events import AccountStatus, TvProduct
from services.common.logins import LoginKind
from services.registration.domain.validation import NormalisedLink


class Outcome(StrEnum):
    """What one command did (a metrics label; never carries an id)."""

    CREATED = "created"
    UPDATED = "updated"
    REOPENED = "reopened"
    CLOSED = "closed"
    UNCHANGED = "unchanged"
    STALE = "stale"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    ERASED = "erased"


@dataclass(frozen=True, kw_only=True)
class ProtectedLink:
    """A normalised link with its keyed hashes; ``fingerprint`` changes iff its content does."""

    link: NormalisedLink
    login_key: str
    mobile_key: str
    personal_account_key: str
    passport_hash: str
    fingerprint: str
    holder_hash: str  # keyed hash of passport + full name: who holds the contract
    contacts_hash: str  # keyed hash of mobile + email: where codes go
    # a personal-account login whose digits also read as a mobile (``89161110003``): that
    # mobile's login key. Typed on the portal, such a login reaches both kinds of account.
    alias_key: str | None = None

    @property
    def reads_as_mobile(self) -> str | None:
        """The mobile login key this login reaches when typed: its own for a mobile login, the
        alias for a personal account that reads as a mobile, else ``None``."""
        return self.login_key if self.link.login_kind is LoginKind.MOBILE else self.alias_key

    @property
    def event_id(self) -> uuid.UUID:
        return self.link.command.event_id

    @property
    def contract_number(self) -> str:
        return self.link.command.contract_number

    @property
    def occurred_at(self) -> datetime:
        return self.link.command.occurred_at


@dataclass(frozen=True, kw_only=True)
class SealedContacts:
    """Contacts encrypted for the services (bound to the account id) and masked for people."""

    mobile_enc: str
    mobile_masked: str
    email_enc: str | None
    email_masked: str | None
    full_name_enc: str
    # for support's identity check only (never published); absent for links stored before it
    personal_account_enc: str | None = None


IDENTIFY = "identify"  # the keyed-hash purpose of support's identity-check counts


def contract_identified(number: str) -> str:
    """What support's identity-check count of a contract number is the keyed hash of (purpose
    ``IDENTIFY``), when no active account holds that number."""
    return "contract:" + number.strip()


class Protector(Protocol):
    """Port: keyed hashes and authenticated encryption of a link's personal data."""

    def protect(self, link: NormalisedLink) -> ProtectedLink: ...

    def seal(self, account_id: uuid.UUID, link: NormalisedLink) -> SealedContacts: ...

    def contract_subject(self, number: str) -> str:
        """The subject of support's identity-check count of a contract number with no active
        account (``service_layer.identify``)."""
        ...


@dataclass(kw_only=True)
class Account:
    account_id: uuid.UUID
    contract_number: str
    status: AccountStatus
    tv_product: TvProduct
    login_key: str
    mobile_key: str
    personal_account_key: str
    contacts: SealedContacts
    passport_hash: str
    fingerprint: str
    mobile_active: bool
    linked_at: datetime  # occurred_at of the link the current state comes from
    closed_at: datetime | None
    last_event_at: datetime  # newest occurred_at applied (link or termination): the order guard
    version: int
    # None on rows written before these were kept: compared as "unknown" (see ``relink``)
    holder_hash: str | None = None
    contacts_hash: str | None = None
    holder_epoch: int = 0  # +1 when the holder changes or the contract reopens
    contacts_epoch: int = 0  # +1 when only the contacts change
    alias_key: str | None = None  # see ``ProtectedLink.alias_key``; None on rows from before it

    @classmethod
    def open(cls, *, account_id: uuid.UUID, link: ProtectedLink, contacts: SealedContacts) -> Account:
        account = cls(
            account_id=account_id, contract_number=link.contract_number,
            status=AccountStatus.ACTIVE, tv_product=link.link.command.tv_product,
            login_key="", mobile_key="", personal_account_key="", contacts=contacts,
            passport_hash="", fingerprint="", mobile_active=True, linked_at=link.occurred_at,
            closed_at=None, last_event_at=link.occurred_at, version=0,
        )
        account._take(link, contacts)
        return account

    @property
    def active(self) -> bool:
        return self.status is AccountStatus.ACTIVE

    def is_newer(self, occurred_at: datetime) -> bool:
        """Only an event newer than everything applied so far may change the account."""
        return occurred_at > self.last_event_at

    def relink(self, link: ProtectedLink, seal: Callable[[], SealedContacts]) -> Outcome:
        """Apply a newer link (the caller checked ``is_newer`` and the login conflict).

        A reopen, or a different holder (passport or full name), raises ``holder_epoch``: the
        password and pending codes are revoked downstream. Otherwise different contacts raise
        ``contacts_epoch``: pending codes are voided. A row from before the hashes were kept
        compares its passport hash for the holder and counts its contacts as changed."""
        self.last_event_at = link.occurred_at
        if self.active and link.fingerprint == self.fingerprint:
            return Outcome.UNCHANGED
        outcome = Outcome.UPDATED if self.active else Outcome.REOPENED
        if not self.active or (
            link.holder_hash != self.holder_hash if self.holder_hash is not None
            else link.passport_hash != self.passport_hash
        ):
            self.holder_epoch += 1
        elif link.contacts_hash != self.contacts_hash:
            self.contacts_epoch += 1
        self._take(link, seal())
        return outcome

    def close(self, occurred_at: datetime) -> Outcome:
        if not self.is_newer(occurred_at):
            return Outcome.STALE
        self.last_event_at = occurred_at
        if not self.active:
            return Outcome.UNCHANGED
        self.status = AccountStatus.CLOSED
        self.closed_at = occurred_at
        self.version += 1
        return Outcome.CLOSED

    def _take(self, link: ProtectedLink, contacts: SealedContacts) -> None:
        self.status = AccountStatus.ACTIVE
        self.tv_product = link.link.command.tv_product
        self.login_key = link.login_key
        self.mobile_key = link.mobile_key
        self.personal_account_key = link.personal_account_key
        self.contacts = contacts
        self.passport_hash = link.passport_hash
        self.fingerprint = link.fingerprint
        self.holder_hash = link.holder_hash
        self.contacts_hash = link.contacts_hash
        self.alias_key = link.alias_key
        self.mobile_active = link.link.command.mobile_active
        self.linked_at = link.occurred_at
        self.closed_at = None
        self.last_event_at = link.occurred_at
        self.version += 1


@dataclass(frozen=True, kw_only=True)
class Erasure:
    """What remains of an erased contract: ids and a time, no personal data. A link that is not
    newer than ``erased_at`` is stale, so a late or redelivered link cannot bring data back."""

    contract_number: str
    account_id: uuid.UUID | None  # the account erased (None: erased before any link)
    erased_at: datetime
