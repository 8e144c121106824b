"""The ``alias_key`` of accounts linked before registration's revision ``0002``, filled once.

A personal account whose digits also read as a mobile (``89161110003``) reaches, typed as a
login, the interactive-TV account with that mobile as well; a link batch refuses the later of
two such active accounts by ``accounts.alias_key`` (``Registry._conflicts``). A migration holds no
key to compute the column, so the rows linked before it kept NULL: a new interactive link could
then take the mobile that an older personal account reads as. The worker fills them at its start,
in chunks of one transaction each, and marks the fill done (``backfills``), so that later starts
skip it. A chunk holds the mobiles it sets (as a link batch does), then looks for the pairs that
already stand: two active accounts that one typed login reaches. Those it cannot undo; each is
one WARNING line with both account ids, for support to settle (re-link or terminate one).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import astuple, dataclass
from functools import partial
from typing import Any

from services.common.crypto import DecryptError, Keyring, contact_aad
from services.common.logins import LOGIN_BY_PRODUCT, LoginKind, login_key, mobile_reading
from services.registration.domain.model import Account
from services.registration.service_layer.ports import SupportRepository, SupportUnitOfWork

log = logging.getLogger(__name__)
NAME = "accounts.alias_key"


@dataclass(frozen=True)
class FillReport:
    accounts: int  # read
    filled: int  # personal accounts that read as a mobile, given their alias
    unsealed: int  # personal-account logins with no sealed number on file (linked before it)
    unreadable: int  # sealed with no key this worker holds
    pairs: int  # active accounts that one typed login reaches, found standing

    def as_json(self) -> dict[str, Any]:
        return vars(self).copy()

    def __add__(self, other: FillReport) -> FillReport:
        return FillReport(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


class FillAliases:
    def __init__(self, *, uow: SupportUnitOfWork, keyring: Keyring, chunk: int = 500) -> None:
        self.uow, self.keyring, self.chunk = uow, keyring, chunk

    async def __call__(self) -> FillReport | None:
        """The fill, or None when this database had it done already."""
        if await self.uow.run(lambda repo: repo.backfill_done(NAME)):
            return None
        after: uuid.UUID | None = None
        report = FillReport(0, 0, 0, 0, 0)
        while True:
            chunk, last = await self.uow.run(partial(self._one_chunk, after=after))
            report += chunk
            if chunk.accounts < self.chunk or last is None:
                break
            after = last
        await self.uow.run(lambda repo: repo.mark_backfill_done(NAME))
        log.info("aliases of earlier accounts filled", extra=report.as_json())
        return report

    def _one_chunk(self, repo: SupportRepository, *, after: uuid.UUID | None
                   ) -> tuple[FillReport, uuid.UUID | None]:
        # not locked: a chunk holds its mobiles before it writes a row, as a link batch does, so
        # the two never wait for each other in a cycle; a row a link changed since is left alone
        found = repo.accounts_after(after, self.chunk, lock=False)
        aliases: list[tuple[Account, str, str]] = []
        unsealed = unreadable = 0
        for account in found:
            if (account.alias_key is not None
                    or LOGIN_BY_PRODUCT[account.tv_product] is not LoginKind.PERSONAL_ACCOUNT):
                continue
            token = account.contacts.personal_account_enc
            if token is None:
                unsealed += 1
                continue
            try:
                number = self.keyring.decrypt(
                    token, aad=contact_aad(str(account.account_id), "personal_account"))
            except DecryptError:
                unreadable += 1
                continue
            if (reading := mobile_reading(number)) is not None:
                aliases.append((account, token, login_key(self.keyring, LoginKind.MOBILE, reading)))
        repo.hold({key for _, _, key in aliases})
        saved = repo.save_aliases([(account.account_id, token, key)
                                   for account, token, key in aliases])
        pairs = 0
        for account, _, key in aliases:
            if account.account_id not in saved or not account.active:
                continue
            for other in repo.active_by_mobile_key(key):
                if LOGIN_BY_PRODUCT[other.tv_product] is LoginKind.MOBILE:
                    pairs += 1
                    log.warning("two active accounts are reached by one typed login",
                                extra={"account_id": str(account.account_id),
                                       "other_account_id": str(other.account_id)})
        report = FillReport(accounts=len(found), filled=len(saved), unsealed=unsealed,
                            unreadable=unreadable, pairs=pairs)
        return report, found[-1].account_id if found else None
