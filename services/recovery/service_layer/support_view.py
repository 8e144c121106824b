"""Support's view of one login: the account it names, its usable channels, its last requests
and its lock-out state, from recovery's own tables (no topic is read).

The login is resolved as a code request would be (the product rule over the keyed hashes), so
support sees what the subscriber gets. Nothing in the answer is a full contact: masked copies,
ids, outcomes and times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from schemas.events import AccountStatus, Channel
from services.common.crypto import DecryptError, Keyring
from services.common.logins import LOGIN_BY_PRODUCT, candidate_keys
from services.recovery.domain.model import Account, LoggedRequest, resolve, route_key
from services.recovery.service_layer.codes import reveal
from services.recovery.service_layer.ports import Clock, Repositories, UnitOfWork

NO_EMAIL = "no_email_linked"
MOBILE_OUT_OF_SERVICE = "mobile_out_of_service"
MOBILE_OUTSIDE_SMS_PREFIXES = "mobile_outside_sms_prefixes"
MOBILE_UNREADABLE = "mobile_unreadable"
ACCOUNT_CLOSED = "account_closed"


def channels(account: Account, *, sms_prefix: str | None = None) -> dict[str, dict[str, Any]]:
    """Each channel: usable or not, and why not (what "call support" means for this login), as a
    code request would find it. ``sms_prefix``: why an SMS may not go to the mobile itself (it is
    outside ``SMS_ALLOWED_PREFIXES``, or it does not open), found by the caller."""
    closed = account.status is not AccountStatus.ACTIVE
    sms_reason = ACCOUNT_CLOSED if closed else (
        sms_prefix if account.sms_usable else MOBILE_OUT_OF_SERVICE)
    email_reason = ACCOUNT_CLOSED if closed else (None if account.email_usable else NO_EMAIL)
    return {"sms": {"usable": sms_reason is None, "reason": sms_reason},
            "email": {"usable": email_reason is None, "reason": email_reason}}


class ViewLogin:
    def __init__(self, *, uow: UnitOfWork, keyring: Keyring, clock: Clock,
                 sms_allowed: Callable[[str], bool]) -> None:
        """``sms_allowed``: the mobiles an SMS may go to (``Policy.sms_allowed``, from
        ``SMS_ALLOWED_PREFIXES``), as a code request judges them."""
        self.uow, self.keyring, self.clock = uow, keyring, clock
        self.sms_allowed = sms_allowed

    async def __call__(self, typed: str) -> dict[str, Any]:
        return await self.uow.run(lambda repos: self._view(repos, typed))

    def _view(self, repos: Repositories, typed: str) -> dict[str, Any]:
        now = self.clock.now()
        candidates = candidate_keys(self.keyring, typed)
        account = resolve(candidates, repos.accounts.by_keys([candidates])) \
            if candidates else None
        route = route_key(self.keyring, typed)
        # the per-login count (every address), and the client addresses it is locked from
        login = self.keyring.keyed_hash("lockout", route)
        failures, locked_until = repos.failures.failures(login)
        addresses, addresses_until = repos.failures.locked_addresses(login, now)
        answer: dict[str, Any] = {
            "login_valid": bool(candidates),
            "found": account is not None,
            "requests": [_request(e) for e in repos.request_log.last(route)],
            "lockout": {"failures": failures,
                        "locked": locked_until is not None and locked_until > now,
                        "locked_until": locked_until if locked_until and locked_until > now else None,
                        "addresses_locked": addresses,
                        "addresses_locked_until": addresses_until},
        }
        if account is not None:
            answer["account"] = {
                "account_id": account.account_id, "status": account.status.value,
                "tv_product": account.tv_product.value,
                "login_kind": LOGIN_BY_PRODUCT[account.tv_product].value,
                "mobile_masked": account.mobile_masked, "email_masked": account.email_masked,
            }
            answer["channels"] = channels(account, sms_prefix=self._sms_prefix(account))
        return answer

    def _sms_prefix(self, account: Account) -> str | None:
        """Why an SMS may not go to the account's mobile (opened here, never shown), if so."""
        try:
            mobile = reveal(self.keyring, account, Channel.SMS)
        except DecryptError:  # sealed with a key recovery no longer holds: see key rotation
            return MOBILE_UNREADABLE
        return None if self.sms_allowed(mobile) else MOBILE_OUTSIDE_SMS_PREFIXES


def _request(entry: LoggedRequest) -> dict[str, Any]:
    shown = asdict(entry)
    del shown["login_key"], shown["account_id"]
    return shown
