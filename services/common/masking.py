"""Masking of personal data for topics and logs: ``+7******4567``, ``i*****v@example.ru``."""

from __future__ import annotations

import re

_NON_DIGITS = re.compile(r"\D")


def mask_phone(e164: str) -> str:
    """Keep the country code and the last four digits: ``+79161234567`` → ``+7******4567``."""
    digits = _NON_DIGITS.sub("", e164)
    if len(digits) < 6:
        return "*" * len(digits)
    if len(digits) == 11 and digits[0] in "78":
        digits = "7" + digits[1:]
    country = digits[0] if digits.startswith("7") else digits[:2]
    hidden = len(digits) - len(country) - 4
    return f"+{country}{'*' * hidden}{digits[-4:]}"


MASKED_EMAIL_MAX = 254
"""The longest masked copy: the longest address, and the limit of ``Masked`` and its columns."""


def mask_email(email: str) -> str:
    """Keep the first character of the local part, its last one too when it has three or more
    (``i*****v@example.ru``, ``a*****@example.ru``), and the domain; of a domain too long for
    the masked copy to fit in 254 characters, only its end, after a ``*``."""
    local, _, domain = email.rpartition("@")
    if not local:
        return "*" * min(len(email), MASKED_EMAIL_MAX)
    # a fixed number of stars hides the length of the local part too; of one or two characters,
    # the last one would show the whole of it
    last = local[-1] if len(local) > 2 else ""
    head = f"{local[0]}*****{last}@"
    room = MASKED_EMAIL_MAX - len(head)
    if len(domain) > room:
        domain = "*" + domain[len(domain) - room + 1:]
    return head + domain


def mask_digits(value: str, keep: int = 4) -> str:
    """A personal account or contract number: ``123456789012`` → ``********9012``."""
    return "*" * max(len(value) - keep, 0) + value[-keep:]


_PHONE_RE = re.compile(r"(?<![\w*])\+?[78][\s\-()]*(?:\d[\s\-()]*){9}\d(?!\w)")
# not inside a longer local part, nor right after the stars of a masked copy
_EMAIL_RE = re.compile(r"(?<![A-Za-z0-9._%+\-*])([A-Za-z0-9._%+\-]+)@([A-Za-z0-9.\-]+)")


def _redacted_email(match: re.Match[str]) -> str:
    local = match.group(1)
    last = local[-1] if len(local) > 2 else ""  # as in mask_email
    return f"{local[0]}***{last}@{match.group(2)}"


def redact_text(text: str) -> str:
    """Last line of defence for log messages: mask anything shaped like a phone or an email."""
    text = _PHONE_RE.sub(lambda m: mask_phone(m.group(0)), text)
    return _EMAIL_RE.sub(_redacted_email, text)
