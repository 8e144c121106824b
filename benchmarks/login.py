"""Successful logins/s against the machine's argon2id capacity for two verifications per login
(not a test; nothing leaves the process).

    .venv/bin/python -m benchmarks.login [--accounts 200] [--logins 400] [--concurrency 8]

1. (a) capacity: a process pool with one worker per core verifies passwords with the service's
   parameters (t=2, m=19 MiB, p=1); verifications/s over ``--logins`` verifications after a
   warm-up, halved (a login verifies two hashes) — measured before and after (b), the mean is
   the reference (the machine is shared: load varies).
2. (b) recovery's real login handler (``LogIn``: SQLite in a temporary folder, the argon2 thread
   pool with one thread per core at the service's nice value, the lock-out and per-address
   counts) logs in ``--logins`` times with the right current password of ``--accounts``
   projected accounts, at most ``--concurrency`` at once, each from its own client address.
3. prints both and the ratio (b)/(a); the target is ≥ 80 %.

Bounded: at most ``--logins`` logins and ``TIME_LIMIT_S`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from benchmarks.recovery import BENCH_KEYS, accounts
from services.common.crypto import (
    Keyring,
    ThreadPoolHasher,
    hash_password,
    verify_password,
)
from services.common.db import Database
from services.common.metrics import ServiceMetrics
from services.common.migrations import migrate
from services.recovery.adapters import repository
from services.recovery.adapters.repository import SqlUnitOfWork
from services.recovery.adapters.tables import MIGRATIONS
from services.recovery.domain.commands import LogIn
from services.recovery.domain.model import Policy
from services.recovery.entrypoints.agents import project_account
from services.recovery.service_layer.log_in import LogInHandler
from services.recovery.service_layer.metrics import RecoveryMetrics
from services.recovery.service_layer.ports import SystemClock
from services.recovery.service_layer.project_accounts import ProjectAccounts
from services.recovery.settings import PasswordSettings

TIME_LIMIT_S = 600
PASSWORDS = PasswordSettings()  # as the service reads them: RECOVERY_HASH_NICE and ARGON2_* too
PARAMS = (PASSWORDS.argon2.time_cost, PASSWORDS.argon2.memory_kib, PASSWORDS.argon2.parallelism)


def login_capacity(count: int, workers: int, hash_: str) -> float:
    """Logins/s the cores allow: verifications/s in a process pool, halved."""
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(verify_password, [PARAMS] * workers, [hash_] * workers,
                      ["warm-up"] * workers))
        started = time.perf_counter()
        list(pool.map(verify_password, [PARAMS] * count, [hash_] * count,
                      [secrets.token_urlsafe(9) for _ in range(count)]))
        return count / (time.perf_counter() - started) / 2


async def logins(folder: Path, n_accounts: int, n_logins: int, concurrency: int,
                 workers: int) -> float:
    keyring = Keyring.from_config(secret_keys=BENCH_KEYS["SECRET_KEYS"],
                                  hash_pepper=BENCH_KEYS["HASH_PEPPER"])
    db = Database(url=f"sqlite:///{folder / 'recovery.db'}", name="bench-login")
    migrate(db.engine, MIGRATIONS)
    hasher = ThreadPoolHasher(params=PARAMS, workers=workers, nice=PASSWORDS.hash_nice)
    try:
        events, mobiles = accounts(keyring, n_accounts)
        uow = SqlUnitOfWork(db=db, hand_over=lambda rows: None)  # no relay: rows stay in the table
        await ProjectAccounts(uow=uow, clock=SystemClock(), keyring=keyring)(
            [project_account(e) for e in events])
        passwords = [secrets.token_urlsafe(9) for _ in events]
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            hashes = [h for h, _ in pool.map(hash_password, [PARAMS] * len(passwords), passwords)]

        def store(session: object) -> None:
            for event, hash_ in zip(events, hashes, strict=True):
                repository.set_password(session, str(event.account_id), hash_,  # type: ignore[arg-type]
                                        time.time())

        await db.run(store)  # type: ignore[arg-type]
        await hasher.warm_up()
        handler = LogInHandler(uow=uow, keyring=keyring, hasher=hasher, clock=SystemClock(),
                        policy=Policy(), metrics=RecoveryMetrics(ServiceMetrics("recovery")))
        gate = asyncio.Semaphore(concurrency)
        failed = 0

        async def one(i: int) -> None:
            nonlocal failed
            k = i % len(mobiles)
            async with gate:
                account = await handler(LogIn(
                    login=mobiles[k], password=passwords[k],
                    client_ip=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"))
            failed += account is None

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*[one(i) for i in range(n_logins)]), TIME_LIMIT_S)
        elapsed = time.perf_counter() - started
        if failed:
            raise RuntimeError(f"{failed} of {n_logins} logins failed")
        return n_logins / elapsed
    finally:
        hasher.close()
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--logins", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    workers = os.cpu_count() or 1
    reference = hash_password(PARAMS, "reference")[0]
    before = login_capacity(args.logins, workers, reference)
    with tempfile.TemporaryDirectory(prefix="bench-login-") as tmp:
        rate = asyncio.run(logins(Path(tmp), args.accounts, args.logins, args.concurrency,
                                  workers))
    after = login_capacity(args.logins, workers, reference)
    capacity = (before + after) / 2
    print(f"argon2id capacity for logins (2 verifications each, {workers} cores): "
          f"{before:.1f} / {after:.1f} logins/s, mean {capacity:.1f}")
    print(f"successful logins: {args.logins} in a run at {rate:.1f} logins/s")
    print(f"ratio: {100 * rate / capacity:.1f} % of argon2id capacity (target ≥ 80 %)")


if __name__ == "__main__":
    main()
