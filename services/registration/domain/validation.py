"""Validation and normalisation of a link: E.164 mobile, email, personal account.

Pure functions: the same input always gives the same ``NormalisedLink`` or the same
``LinkRejected`` reason (one of DESIGN.md's ``ContractRejected`` reasons).
"""

from __future__ import annotations

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


def normalise_email(text: str) -> str:
    """Syntax only (no DNS); raises ``LinkRejected(invalid_email)``."""
    try:
        valid = validate_email(text.strip(), check_deliverability=False)
    except EmailNotValidError:
        raise LinkRejected(ContractRejectReason.INVALID_EMAIL) from None
    return f"{valid.local_part}@{valid.domain.lower()}"


def normalise_passport(series: str, number: str) -> str:
    return re.sub(r"\s", "", series + number).upper()


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
