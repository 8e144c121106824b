"""Ports of the service layer: the time source and the slow password hash."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Unix time in seconds."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class PasswordHasher(Protocol):
    async def hash_many(self, passwords: Sequence[str]) -> list[str]:
        """argon2id hashes of ``passwords``, computed concurrently off the event loop."""
        ...

    async def verify_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (hash, password): does the password match? Concurrently, off the loop."""
        ...

    async def dummy_hash(self) -> str:
        """A hash of a random password with the same parameters (unknown logins verify it)."""
        ...
