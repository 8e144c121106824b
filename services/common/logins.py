"""Logins: which identifier is the login of each TV product, and how typed logins normalise.

The product table is configuration, in one place (DESIGN.md rule 2). Registration and recovery
both normalise with these functions, so a login typed on the portal meets the key registration
published: ``keyed_hash("login:<kind>", normalised value)``.

Only ASCII digits are digits here. Full-width (``０-９``), Arabic-Indic (``٠-٩``) and other
scripts' digits are refused (``InvalidLogin``), never mapped to the ASCII login they look like:
such a mapping could make a login typed one way reach another subscriber's account, and no CRM
or portal sends them (the hostile corpus and the property tests keep this so).
"""

from __future__ import annotations

import re
from enum import StrEnum

import phonenumbers

from schemas.events import TvProduct
from services.common.crypto import Keyring


class LoginKind(StrEnum):
    MOBILE = "mobile"
    PERSONAL_ACCOUNT = "personal_account"


LOGIN_BY_PRODUCT: dict[TvProduct, LoginKind] = {
    TvProduct.INTERACTIVE: LoginKind.MOBILE,
    TvProduct.LINEAR: LoginKind.PERSONAL_ACCOUNT,
    TvProduct.SATELLITE: LoginKind.PERSONAL_ACCOUNT,
}

PERSONAL_ACCOUNT_RE = re.compile(r"[0-9]{6,20}", re.ASCII)
_NOT_PHONE_CHAR = re.compile(r"[^0-9+\-() .]")
_NON_DIGITS = re.compile(r"\D")
_SPACES = re.compile(r"\s")


def _mobile_pattern(region: str) -> re.Pattern[str]:
    """``region``'s pattern of mobile national numbers, from phonenumbers' own metadata."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    pattern = None if metadata is None or metadata.mobile is None \
        else metadata.mobile.national_number_pattern
    if pattern is None:
        raise RuntimeError(f"phonenumbers has no mobile pattern for {region}")
    return re.compile(pattern)


# Every Russian mobile is +7 9…, and for a national number that starts with 9 this pattern alone
# is phonenumbers' answer: RU's leading digits take it (not KZ's), and none of RU's other number
# types starts with 9. tests/common/test_logins.py holds the two answers equal over every
# six-digit prefix.
_RU_MOBILE = _mobile_pattern("RU")


class InvalidLogin(ValueError):
    """The text is not a valid value of that kind of login."""


def normalise_mobile(text: str) -> str:
    """A Russian mobile number as people type it (``+7…``, ``8…``, ``7…``, spaces, dashes,
    brackets) in E.164 (``+79161234567``); raises ``InvalidLogin`` otherwise."""
    if not text or len(text) > 32 or _NOT_PHONE_CHAR.search(text):
        raise InvalidLogin("mobile has characters other than digits, spaces, +, -, brackets")
    digits = _NON_DIGITS.sub("", text)
    if len(digits) == 11 and digits[0] == "8" and not text.lstrip().startswith("+"):
        digits = "7" + digits[1:]
    elif len(digits) == 10 and not text.lstrip().startswith("+"):
        digits = "7" + digits
    if len(digits) == 11 and digits[0] == "7" and digits[1] == "9":
        if _RU_MOBILE.fullmatch(digits, 1) is None:
            raise InvalidLogin("not a valid mobile number")
        return "+" + digits
    number = _russian_number(digits)
    if number is None:
        try:
            number = phonenumbers.parse("+" + digits, None)
        except phonenumbers.NumberParseException as exc:
            raise InvalidLogin("not a phone number") from exc
    if number.country_code != 7 or phonenumbers.region_code_for_number(number) != "RU":
        raise InvalidLogin("not a Russian number")
    # number_type checks the number against RU's patterns: an invalid number is UNKNOWN, so a
    # mobile type also means a valid number (is_valid_number would match the same patterns again)
    if phonenumbers.number_type(number) not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise InvalidLogin("not a valid mobile number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _russian_number(digits: str) -> phonenumbers.PhoneNumber | None:
    """``+7`` and ten digits that ``phonenumbers.parse`` would take as they are (no leading 0,
    nor RU's national prefix 8, which it strips), built directly: parsing is half the cost of
    the whole check. Anything else is left to ``parse``."""
    if len(digits) != 11 or digits[0] != "7" or digits[1] in "08":
        return None
    return phonenumbers.PhoneNumber(country_code=7, national_number=int(digits[1:]))


def normalise_personal_account(text: str) -> str:
    """A personal account number: digits, spaces allowed when typed; 6 to 20 digits."""
    compact = _SPACES.sub("", text or "")
    if not PERSONAL_ACCOUNT_RE.fullmatch(compact):
        raise InvalidLogin("personal account must be 6 to 20 digits")
    return compact


def mobile_reading(personal_account: str) -> str | None:
    """The mobile (E.164) that a normalised personal account also reads as when typed as a
    login, or ``None``: ``candidate_keys`` of ``89161110003`` holds both kinds of key. Digits
    alone read as a Russian mobile only as ten digits, as ``8`` and ten, or from a leading ``7``
    (``+7`` and what follows: ``789161110003`` too, the ``8`` taken as the national prefix);
    anything else skips the parse (a property test holds this against ``normalise_mobile``)."""
    if not (len(personal_account) == 10 or personal_account.startswith("7")
            or (len(personal_account) == 11 and personal_account.startswith("8"))):
        return None
    try:
        return normalise_mobile(personal_account)
    except InvalidLogin:
        return None


def login_key(keyring: Keyring, kind: LoginKind, normalised: str) -> str:
    return keyring.keyed_hash(f"login:{kind.value}", normalised)


def candidate_keys(keyring: Keyring, typed: str) -> dict[LoginKind, str]:
    """Every login key a typed login could stand for (a mobile, a personal account, or both)."""
    keys: dict[LoginKind, str] = {}
    try:
        keys[LoginKind.MOBILE] = login_key(keyring, LoginKind.MOBILE, normalise_mobile(typed))
    except InvalidLogin:
        pass
    try:
        keys[LoginKind.PERSONAL_ACCOUNT] = login_key(
            keyring, LoginKind.PERSONAL_ACCOUNT, normalise_personal_account(typed)
        )
    except InvalidLogin:
        pass
    return keys
