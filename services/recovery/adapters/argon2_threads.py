"""argon2id in a thread pool shared by the whole service. argon2-cffi releases the GIL while it
hashes, so the threads use every core and never block the event loop, with no process to start
and nothing to pickle or pipe per hash (a process pool cost more CPU per hash and its helper
threads competed for the GIL with the event loop)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from prometheus_client import Histogram

T = TypeVar("T")
Params = tuple[int, int, int]  # time_cost, memory_kib, parallelism


def _hasher(params: Params) -> PasswordHasher:
    return PasswordHasher(time_cost=params[0], memory_cost=params[1], parallelism=params[2])


def hash_password(params: Params, password: str) -> tuple[str, float]:
    started = time.perf_counter()
    return _hasher(params).hash(password), time.perf_counter() - started


def verify_password(params: Params, hash_: str, password: str) -> tuple[bool, float]:
    started = time.perf_counter()
    ok: bool
    try:
        ok = bool(_hasher(params).verify(hash_, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    return ok, time.perf_counter() - started


class ThreadPoolHasher:
    def __init__(self, *, params: Params, workers: int, seconds: Histogram | None = None) -> None:
        self.params = params
        self.workers = workers
        self._seconds = seconds
        self._pool: ThreadPoolExecutor | None = None
        self._dummy: str | None = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="argon2")
        return self._pool

    def _observe(self, op: str, seconds: float) -> None:
        if self._seconds is not None:
            self._seconds.labels(op).observe(seconds)

    async def hash_many(self, passwords: Sequence[str]) -> list[str]:
        return await self._in_pool("hash", hash_password, [(p,) for p in passwords])

    async def verify_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        return await self._in_pool("verify", verify_password, pairs)

    async def _in_pool(self, op: str, fn: Callable[..., tuple[T, float]],
                       calls: Sequence[tuple[str, ...]]) -> list[T]:
        """``fn(params, *call)`` for every call, concurrently in the pool; times observed."""
        loop = asyncio.get_running_loop()
        pool = self._executor()
        results = await asyncio.gather(
            *(loop.run_in_executor(pool, fn, self.params, *call) for call in calls)
        )
        for _, seconds in results:
            self._observe(op, seconds)
        return [value for value, _ in results]

    async def dummy_hash(self) -> str:
        if self._dummy is None:
            (self._dummy,) = await self.hash_many([secrets.token_urlsafe(16)])
        return self._dummy

    async def warm_up(self) -> None:
        """Start every thread now (and make the dummy hash), not on the first request."""
        await self.dummy_hash()
        await self.hash_many([secrets.token_urlsafe(8) for _ in range(self.workers)])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
