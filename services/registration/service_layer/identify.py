"""Support's identity check: the keyed passport hash and the full name against the account.

Only when both match does the answer carry the personal account number and the login to use (by
the product rule). Every other case — unknown contract or mobile, wrong passport, wrong name, a
closed account — is the same ``not_confirmed`` with nothing else. Attempts are counted per
account (per looked-up value when no account matches, so the limit tells nothing either) in a
sliding window — at most ``max_attempts`` in any ``window_s`` seconds — before the check. The
log line names the operator and the outcome, never the passport nor the name.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.common.crypto import DecryptError, Keyring, contact_aad
from services.common.logins import (
    LOGIN_BY_PRODUCT,
    InvalidLogin,
    LoginKind,
    login_key,
    normalise_mobile,
)
from services.registration.domain.model import IDENTIFY, Account, contract_identified
from services.registration.domain.validation import normalise_passport
from services.registration.service_layer.ports import SupportRepository, SupportUnitOfWork

log = logging.getLogger(__name__)


class Verdict(StrEnum):
    CONFIRMED = "confirmed"
    NOT_CONFIRMED = "not_confirmed"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, kw_only=True)
class IdentifyCommand:
    operator: str
    passport: str  # "<series> <number>" as read from the document
    full_name: str
    contract: str | None = None
    mobile: str | None = None


@dataclass(frozen=True, kw_only=True)
class IdentifyAnswer:
    verdict: Verdict
    tv_product: str | None = None
    login_kind: str | None = None
    login: str | None = None
    personal_account: str | None = None
    retry_after_s: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


def normalise_name(text: str) -> str:
    """Case, runs of spaces and ё/е do not matter: ``СЕМЁНОВ  Пётр`` is ``семенов петр``."""
    folded = unicodedata.normalize("NFKC", text).casefold().replace("ё", "е")
    return re.sub(r"\s+", " ", folded).strip()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class IdentifyHolder:
    def __init__(self, *, uow: SupportUnitOfWork, keyring: Keyring, max_attempts: int,
                 window_s: int, clock: Callable[[], float] = time.time) -> None:
        self.uow, self.keyring = uow, keyring
        self.max_attempts, self.window_s = max_attempts, window_s
        self.clock = clock

    async def __call__(self, command: IdentifyCommand) -> IdentifyAnswer:
        answer, account_id = await self.uow.run(lambda repo: self._check(repo, command))
        log.info("identity check", extra={
            "operator": command.operator, "verdict": answer.verdict.value,
            "lookup": "contract" if command.contract else "mobile",
            "account_id": account_id})
        return answer

    def _candidates(self, repo: SupportRepository,
                    command: IdentifyCommand) -> tuple[list[Account], str]:
        if command.contract:
            number = command.contract.strip()
            return repo.active_by_contract(number), self.keyring.keyed_hash(
                IDENTIFY, contract_identified(number))
        typed = command.mobile or ""
        try:
            key = login_key(self.keyring, LoginKind.MOBILE, normalise_mobile(typed))
        except InvalidLogin:
            return [], self.keyring.keyed_hash(IDENTIFY, "mobile:" + typed.strip())
        return repo.active_by_mobile_key(key), key

    def _check(self, repo: SupportRepository,
               command: IdentifyCommand) -> tuple[IdentifyAnswer, str | None]:
        now = self.clock()
        candidates, lookup = self._candidates(repo, command)
        # one check of every candidate account, or of none: a refusal takes nothing of the others
        subjects = [str(a.account_id) for a in candidates] or [lookup]
        retry = repo.take_attempts(subjects, max_events=self.max_attempts, window_s=self.window_s,
                                   now=now)
        if retry is not None:
            return IdentifyAnswer(verdict=Verdict.RATE_LIMITED, retry_after_s=retry), \
                subjects[0] if candidates else None
        repo.prune_attempts(now)
        passport_hash = self.keyring.keyed_hash("passport", normalise_passport(command.passport, ""))
        name = normalise_name(command.full_name)
        for account in candidates:
            if self._matches(account, passport_hash, name):
                return self._confirmed(account), str(account.account_id)
        return IdentifyAnswer(verdict=Verdict.NOT_CONFIRMED), \
            str(candidates[0].account_id) if candidates else None

    def _matches(self, account: Account, passport_hash: str, name: str) -> bool:
        aid = str(account.account_id)
        try:
            held = self.keyring.decrypt(account.contacts.full_name_enc, aad=contact_aad(aid, "full_name"))
        except DecryptError:
            return False
        passport_ok = _same(account.passport_hash, passport_hash)
        name_ok = _same(normalise_name(held), name)
        return passport_ok and name_ok

    def _confirmed(self, account: Account) -> IdentifyAnswer:
        aid = str(account.account_id)
        kind = LOGIN_BY_PRODUCT[account.tv_product]
        token = account.contacts.personal_account_enc
        personal = None if token is None else self.keyring.decrypt(
            token, aad=contact_aad(aid, "personal_account"))
        login = personal if kind is LoginKind.PERSONAL_ACCOUNT else account.contacts.mobile_masked
        return IdentifyAnswer(verdict=Verdict.CONFIRMED, tv_product=account.tv_product.value,
                              login_kind=kind.value, login=login or "(not on file: re-link needed)",
                              personal_account=personal or "(not on file: re-link needed)")
