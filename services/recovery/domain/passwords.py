"""Passwords people can type from an SMS: CSPRNG, no look-alike characters."""

from __future__ import annotations

import secrets

# No 0/O/o, 1/l/I/i, nor 5/S, 2/Z, 8/B, u/v pairs that blur on small screens.
ALPHABET = "abcdefghjkmnpqrstwxyzACDEFGHJKLMNPQRTUVWXY34679"
MIN_LENGTH = 8


def generate_password(length: int = 12) -> str:
    if length < MIN_LENGTH:
        raise ValueError(f"a password has at least {MIN_LENGTH} characters")
    return "".join(secrets.choice(ALPHABET) for _ in range(length))
