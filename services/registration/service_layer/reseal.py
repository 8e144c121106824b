"""``keys reseal``: every account sealed again with the newest contact key, and re-published.

Each chunk is one transaction: the accounts are read (locked on PostgreSQL), every contact not
sealed with the newest key is opened and sealed again, the version goes up by one and the new
``AccountChanged`` is staged in the outbox with the rows; the relay publishes it. The compacted
topic then holds, for every account, a value that the newest key alone opens. Running it again
changes nothing that is already resealed (idempotent); accounts whose contacts no held key opens
are counted and left as they are.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from schemas.topics import ACCOUNT_CHANGED
from services.common.crypto import DecryptError, Keyring, contact_aad
from services.registration.domain.model import Account, SealedContacts
from services.registration.service_layer.outbound import account_changed
from services.registration.service_layer.ports import SupportRepository, SupportUnitOfWork

log = logging.getLogger(__name__)
FIELDS = ("mobile", "email", "full_name", "personal_account")


@dataclass(frozen=True)
class ResealReport:
    accounts: int
    resealed: int
    unreadable: int
    key_id: str

    def as_json(self) -> dict[str, Any]:
        return {"accounts": self.accounts, "resealed": self.resealed,
                "unreadable": self.unreadable, "newest_key_id": self.key_id}


class ResealAccounts:
    def __init__(self, *, uow: SupportUnitOfWork, keyring: Keyring,
                 flush: Callable[[], Awaitable[object]], chunk: int = 200) -> None:
        self.uow, self.keyring, self.chunk = uow, keyring, chunk
        self.flush = flush  # the relay's: publishes what the chunks' transactions staged

    async def __call__(self) -> ResealReport:
        after: uuid.UUID | None = None
        total = resealed = unreadable = 0
        while True:
            seen, changed, bad, last = await self.uow.run(partial(self._one_chunk, after=after))
            total, resealed, unreadable = total + seen, resealed + changed, unreadable + bad
            await self.flush()
            if seen < self.chunk or last is None:
                break
            after = last
        report = ResealReport(accounts=total, resealed=resealed, unreadable=unreadable,
                              key_id=self.keyring.newest_key_id)
        log.info("accounts resealed", extra=report.as_json())
        return report

    def _one_chunk(self, repo: SupportRepository, *, after: uuid.UUID | None
                   ) -> tuple[int, int, int, uuid.UUID | None]:
        # the chunk's contracts held first, as a link batch, a termination or an erasure holds
        # them, then read again as they stand, locked: none of them writes over the other
        read = repo.accounts_after(after, self.chunk, lock=False)
        if not read:
            return 0, 0, 0, None
        last = read[-1].account_id
        held = {a.contract_number for a in read}
        repo.hold_contracts(held)
        # read again up to the first read's last account: accounts linked meanwhile inside that
        # range take places in a locked read of ``chunk``, so it goes on until it reaches that
        # account; paging goes on after it, so none is left out
        found: list[Account] = []
        start = after
        while True:
            locked = repo.accounts_after(start, self.chunk)
            found += [a for a in locked if a.account_id <= last and a.contract_number in held]
            if len(locked) < self.chunk or locked[-1].account_id >= last:
                break
            start = locked[-1].account_id
        changed: list[Account] = []
        bad = 0
        for account in found:
            try:
                contacts = self._sealed_again(account)
            except DecryptError:
                bad += 1
                log.warning("account not resealed: no held key opens it",
                            extra={"account_id": str(account.account_id)})
                continue
            if contacts is not None:
                account.contacts = contacts
                account.version += 1
                changed.append(account)
        repo.save_sealed(changed)
        repo.stage(ACCOUNT_CHANGED, [account_changed(a) for a in changed])
        # paged by the first read: an account erased meanwhile does not end the run early
        return len(read), len(changed), bad, last

    def _sealed_again(self, account: Account) -> SealedContacts | None:
        """The contacts sealed with the newest key, or None when they already are."""
        c = account.contacts
        tokens = {f: getattr(c, f"{f}_enc") for f in FIELDS}
        stale = {f: t for f, t in tokens.items()
                 if t is not None and not self.keyring.sealed_with_newest(t)}
        if not stale:
            return None
        aid = str(account.account_id)
        fresh = {f"{f}_enc": self.keyring.encrypt(self.keyring.decrypt(t, aad=contact_aad(aid, f)),
                                                  aad=contact_aad(aid, f))
                 for f, t in stale.items()}
        return replace(c, **fresh)
