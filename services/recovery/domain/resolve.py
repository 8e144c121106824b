"""Which account a typed login names, by the product table (DESIGN.md rule 2)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from schemas.events import AccountStatus
from services.common.crypto import Keyring
from services.common.logins import LOGIN_BY_PRODUCT, InvalidLogin, LoginKind, normalise_mobile
from services.recovery.domain.model import Account


def route_login(typed: str) -> str:
    """The login in one canonical form: E.164 when it is a mobile, else its digits."""
    try:
        return normalise_mobile(typed)
    except InvalidLogin:
        return "".join(ch for ch in typed if ch.isdigit())


def route_key(keyring: Keyring, typed: str) -> str:
    """The internal partition key of a login (a keyed hash: no phone number in any key)."""
    return keyring.keyed_hash("login-route", route_login(typed))


def resolve(candidates: Mapping[LoginKind, str], accounts: Iterable[Account]) -> Account | None:
    """The account whose product's login kind matches one of ``candidates`` (kind → key).

    An active account wins over a closed one with the same login; then the newest version.
    """
    matches = [
        account
        for account in accounts
        if (kind := LOGIN_BY_PRODUCT[account.tv_product]) in candidates
        and account.login_keys.get(kind) == candidates[kind]
    ]
    if not matches:
        return None
    return max(matches, key=lambda a: (a.status is AccountStatus.ACTIVE, a.version))
