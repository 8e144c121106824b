"""Validation and normalisation of a link: E.164 mobile, email, personal account.

Pure functions: the same input always gives the same ``NormalisedLink`` or the same
``LinkRejected`` reason (one of DESIGN.md's ``ContractRejected`` reasons).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from schemas.events import ContractRejectReason
from services.common.logins import (
    LOGIN_BY_PRODUCT,
    InvalidLogin,
    LoginKind,
    normalise_mobile,
    normalise_personal_account,
)
from services.registration.domain.commands import LinkContract


class LinkRejected(Exception):
    """A well-formed link that cannot be accepted; ``reason`` goes to ``ContractRejected``."""

    def __init__(self, reason: ContractRejectReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class NormalisedLink:
    """A link whose personal data is valid and in canonical form (held in memory only)."""

    command: LinkContract
    login_kind: LoginKind
    mobile: str  # E.164
    email: str | None  # local part as typed, domain lower-cased
    personal_account: str  # digits only
    full_name: str
    passport: str  # series + number, no spaces, upper-case


# RFC 5322's dot-atom in ASCII: the local part almost every address has
_SPACES = re.compile(r"\s")
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# local parts email-validator lower-cases (RFC 2142): left to it
_ROLE_NAMES = frozenset({
    "info", "marketing", "sales", "support", "abuse", "noc", "security", "postmaster",
    "hostmaster", "usenet", "news", "webmaster", "www", "uucp", "ftp",
})
_MAX_ADDRESS = 254  # octets, RFC 3696 errata 1690
_MAX_LOCAL = 64


def normalise_email(text: str) -> str:
    """Syntax only (no DNS); raises ``LinkRejected(invalid_email)``.

    email-validator decides. Its domain checks (IDNA, UTS-46) are about half the cost of an
    address and give the same answer for every address at a domain, so for the usual shape — a
    plain ASCII local part — the domain's answer is kept per domain (``_domain``) and the local
    part's syntax is the dot-atom above. Every other address goes through ``validate_email``
    whole; a test checks that both ways agree."""
    address = text.strip()
    local, at, domain = address.rpartition("@")
    if at and len(local) <= _MAX_LOCAL and _PLAIN_LOCAL.fullmatch(local) \
            and local.lower() not in _ROLE_NAMES:
        checked = _domain(domain)
        if checked is None:
            raise LinkRejected(ContractRejectReason.INVALID_EMAIL)
        name, ascii_name = checked
        longest = max(len(domain.encode()), len(name.encode()), len(ascii_name))
        if len(local) + 1 + longest > _MAX_ADDRESS:
            raise LinkRejected(ContractRejectReason.INVALID_EMAIL)
        return f"{local}@{name.lower()}"
    try:
        valid = validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        raise LinkRejected(ContractRejectReason.INVALID_EMAIL) from None
    return f"{valid.local_part}@{valid.domain.lower()}"


@functools.lru_cache(maxsize=4096)
def _domain(domain: str) -> tuple[str, str] | None:
    """email-validator's answer for ``domain``: (its form, its IDNA ASCII form), or None."""
    try:
        valid = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    return valid.domain, valid.ascii_domain


def normalise_passport(series: str, number: str) -> str:
    return _SPACES.sub("", series + number).upper()


def normalise_link(command: LinkContract) -> NormalisedLink:
    """The link in canonical form; raises ``LinkRejected`` with the first failing reason."""
    try:
        mobile = normalise_mobile(command.mobile)
    except InvalidLogin:
        raise LinkRejected(ContractRejectReason.INVALID_MOBILE) from None
    email = normalise_email(command.email) if command.email is not None else None
    try:
        account = normalise_personal_account(command.personal_account)
    except InvalidLogin:
        raise LinkRejected(ContractRejectReason.INVALID_PERSONAL_ACCOUNT) from None
    return NormalisedLink(
        command=command,
        login_kind=LOGIN_BY_PRODUCT[command.tv_product],
        mobile=mobile,
        email=email,
        personal_account=account,
        full_name=" ".join(command.full_name.split()),
        passport=normalise_passport(command.passport_series, command.passport_number),
    )
