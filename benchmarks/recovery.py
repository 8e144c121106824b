"""Recovery's issued codes/s against the machine's argon2id capacity (not a test; loopback only).

    .venv/bin/python -m benchmarks.recovery [--requests 2000] [--hashes 0]

1. (a) argon2id capacity: a process pool with one worker per core hashes passwords with the
   service's parameters (t=2, m=19 MiB, p=1); hashes/s over ``--hashes`` hashes (default
   ``--requests // 10``, at least 8 per core) after one warm-up round — measured before and
   after (b), and the mean is the reference (the machine is shared: load varies).
2. (b) the recovery worker (real process, SQLite, fresh topics under a new prefix) first
   projects M ``AccountChanged`` (interactive accounts, distinct mobiles), then a backlog of
   M ``CodeRequested`` (distinct logins, no client IP) is produced at once; the rate runs from
   the first request's broker timestamp to the M-th ``CodeIssued``'s.
3. prints both and the ratio (b)/(a); the target is ≥ 80 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from deploy import topics as topic_admin
from schemas.events import AccountChanged, Channels, CodeRequested, Contacts, LoginKeys
from schemas.topics import ACCOUNT_CHANGED, CODE_ISSUED, CODE_REJECTED, CODE_REQUESTED
from services.common.codec import encode
from services.common.crypto import Keyring, contact_aad, hash_password
from services.common.faust_private import refresh_metadata
from services.common.logins import LoginKind, login_key
from services.common.masking import mask_phone
from services.recovery.settings import Argon2Params

ROOT = Path(__file__).resolve().parents[1]
BENCH_KEYS = {"SECRET_KEYS": "m9d4mNNbQnMmJrO0PjzIuR6Z4gk0Szz0yFSsmy9sX9A",
              "HASH_PEPPER": "bench-pepper-0123456789abcdef",
              "RECOVERY_API_TOKEN": "bench-recovery-api-token-0123456789"}
TIME_LIMIT_S = 900


def argon2_capacity(count: int, workers: int) -> float:
    p = Argon2Params()
    params = (p.time_cost, p.memory_kib, p.parallelism)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(hash_password, [params] * workers, ["warm-up"] * workers))
        started = time.perf_counter()
        list(pool.map(hash_password, [params] * count,
                      [secrets.token_urlsafe(9) for _ in range(count)]))
        return count / (time.perf_counter() - started)


def accounts(keyring: Keyring, m: int) -> tuple[list[AccountChanged], list[str]]:
    events, mobiles = [], []
    for i in range(m):
        mobile = f"+7916{i:07d}"
        account = AccountChanged.model_validate_json(json.dumps({
            "account_id": f"00000000-0000-4000-8000-{i:012d}", "contract_number": f"BN-{i}",
            "version": 1, "status": "active", "tv_product": "interactive",
            "login_keys": {"mobile": "0" * 64, "personal_account": "0" * 64},
            "channels": {"sms": True, "email": False},
            "contacts": {"mobile_masked": "x", "mobile_enc": "v1.00000000.x"},
            "linked_at": "2026-11-24T09:30:00Z"}))
        aid = str(account.account_id)
        events.append(account.model_copy(update={
            "login_keys": LoginKeys(mobile=login_key(keyring, LoginKind.MOBILE, mobile),
                                    personal_account=login_key(keyring, LoginKind.PERSONAL_ACCOUNT,
                                                               f"{500000000000 + i}")),
            "channels": Channels(sms=True, email=False),
            "contacts": Contacts(mobile_masked=mask_phone(mobile),
                                 mobile_enc=keyring.encrypt(mobile, aad=contact_aad(aid, "mobile"))),
        }))
        mobiles.append(mobile)
    return events, mobiles


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k) for k, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def timestamps(bootstrap: str, topic: str, count: int, deadline: float) -> list[int]:
    """Broker timestamps (ms) of the first ``count`` records of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        await refresh_metadata(consumer)
        parts = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in parts])
        await consumer.seek_to_beginning()
        out: list[int] = []
        while len(out) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: {len(out)} of {count} records")
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                out += [m.timestamp for m in msgs]
        return sorted(out)[:count]
    finally:
        await consumer.stop()


def wait_http(url: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("recovery worker exited")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback http
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(url)


def wait_rows(db: Path, count: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(db) as conn:
                if conn.execute("SELECT count(*) FROM accounts").fetchone()[0] >= count:
                    return
        except sqlite3.Error:
            pass
        time.sleep(0.5)
    raise TimeoutError("projection")


def start_worker(env: dict[str, str], log_path: Path, level: str) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "services.recovery", "worker",  # noqa: S603
                                 "--loglevel", level],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


async def service_rate(bootstrap: str, m: int, port: int, keep_log: Path | None) -> float:
    deadline = time.monotonic() + TIME_LIMIT_S
    keyring = Keyring.from_config(secret_keys=BENCH_KEYS["SECRET_KEYS"],
                                  hash_pepper=BENCH_KEYS["HASH_PEPPER"])
    prefix = f"bench{secrets.token_hex(4)}."
    try:
        return await measure_service(bootstrap, prefix, keyring, m, port, keep_log, deadline)
    finally:  # a broker that keeps every run's topics slows down (and skews later runs)
        await topic_admin.remove(bootstrap, prefix=prefix)


async def measure_service(bootstrap: str, prefix: str, keyring: Keyring, m: int, port: int,
                          keep_log: Path | None, deadline: float) -> float:
    await topic_admin.apply(bootstrap, prefix=prefix, replication_factor=1)
    events, mobiles = accounts(keyring, m)
    with tempfile.TemporaryDirectory(prefix="recovery-bench-") as tmp:
        env = {**os.environ, **BENCH_KEYS, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
               "TOPIC_PREFIX": prefix, "SELFCARE_VAR_DIR": tmp, "RECOVERY_WEB_PORT": str(port),
               "LOG_LEVEL": "INFO" if keep_log else "WARNING"}
        env.pop("RECOVERY_DATABASE_URL", None)
        proc = start_worker(env, Path(tmp) / "worker.log", "info" if keep_log else "warn")
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", proc, deadline)
            wires = [encode(e, key=str(e.account_id), source="/bench") for e in events]
            await produce(bootstrap, prefix + ACCOUNT_CHANGED, [(w.key, w.value) for w in wires])
            wait_rows(Path(tmp) / "recovery.db", m, deadline)
            requests = [encode(CodeRequested.model_validate_json(json.dumps(
                {"login": "8" + mob[2:], "channel": "sms"})), key=None, source="/bench")
                for mob in mobiles]
            await produce(bootstrap, prefix + CODE_REQUESTED, [(w.key, w.value) for w in requests])
            first = (await timestamps(bootstrap, prefix + CODE_REQUESTED, m, deadline))[0]
            last = (await timestamps(bootstrap, prefix + CODE_ISSUED, m, deadline))[-1]
            rejected = await timestamps(bootstrap, prefix + CODE_REJECTED, 0, deadline)
            assert not rejected
            return m / ((last - first) / 1000)
        except Exception:
            print((Path(tmp) / "worker.log").read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
            if keep_log is not None:
                shutil.copyfile(Path(tmp) / "worker.log", keep_log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="backlog size M")
    parser.add_argument("--hashes", type=int, default=0, help="hashes for (a); 0 = M/10")
    parser.add_argument("--port", type=int, default=16192)
    parser.add_argument("--keep-log", type=Path, help="copy the worker's log (INFO) there")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS",
                                                              "127.0.0.1:9092"))
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 20000:
        parser.error("--requests must be within 1..20000")
    cores = os.cpu_count() or 1
    hashes = args.hashes or max(args.requests // 10, 8 * cores)
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes skew every figure)")
    before = argon2_capacity(hashes, cores)
    print(f"(a) argon2id capacity, {cores} processes, t=2 m=19456KiB p=1: "
          f"{before:.1f} hashes/s ({hashes} hashes, before (b))")
    rate = asyncio.run(service_rate(args.bootstrap, args.requests, args.port, args.keep_log))
    print(f"(b) recovery worker, backlog of {args.requests} CodeRequested: {rate:.1f} codes issued/s")
    after = argon2_capacity(hashes, cores)
    capacity = (before + after) / 2
    print(f"(a) again after (b): {after:.1f} hashes/s; mean {capacity:.1f} hashes/s")
    print(f"ratio (b)/(a): {100 * rate / capacity:.0f}% (target >= 80%)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
