"""Benchmark of the notifier: a backlog of CodeIssued through a real worker to a 50 ms SMS gateway.

Produces ``--count`` CodeIssued (default 20,000) on the real broker under a fresh topic prefix,
starts the local gateway (``deploy.devgateway``, every answer after ``--delay-ms``)
and ``--workers`` notifier workers, and measures sends/s until the gateway has accepted every
code. Prints the gateway's own counts: distinct ``client_ref``s (must equal the backlog) and
duplicates (0).

Before that, in the same run, the floor (``benchmarks.notifier_floor``): as many faust agents that
each make one gateway call per record of the same backlog (same HTTP client, connection limit and
in-flight bound, a gateway of their own with the same delay), nothing recorded. The notifier's
rate is printed as a share of the floor's.

    .venv/bin/python -m benchmarks.notifier [--count 20000] [--delay-ms 50]
        [--postgres-url $(.venv/bin/python -m deploy.postgres url) [--workers 2]] [--primary-down]

``--primary-down``: the primary gateway's URL refuses connections and the local gateway is the
fallback (``SMS_FALLBACK_URL``): the circuit opens and the fallback carries every send.

Loopback only; bounded by ``--timeout-s``. Needs the broker (KAFKA_BOOTSTRAP_SERVERS).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

from deploy.devgateway import DevGateway
from deploy.launch import (
    TEST_HASH_PEPPER,
    TEST_SECRET_KEYS,
    Worker,
    create_topics,
    free_port,
    new_prefix,
    produce,
    service_env,
)
from deploy.topics import remove as remove_topics
from schemas.events import Channel, CodeIssued, Locale
from schemas.topics import CODE_ISSUED
from services.common.codec import encode
from services.common.crypto import Keyring, code_aad

TOKEN = "bench-" + uuid.uuid4().hex


def backlog(count: int) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    keyring = Keyring.from_config(secret_keys=TEST_SECRET_KEYS, hash_pepper=TEST_HASH_PEPPER)
    expires = datetime.now(UTC) + timedelta(hours=1)
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    for i in range(count):
        code_id = str(uuid.uuid4())
        event = CodeIssued(
            code_id=uuid.UUID(code_id), request_event_id=uuid.uuid4(), account_id=uuid.uuid4(),
            channel=Channel.SMS, locale=Locale.RU, expires_at=expires,
            destination_masked="+7******" + f"{i % 10000:04d}",
            destination_enc=keyring.encrypt(f"+7916{i:07d}", aad=code_aad(code_id, "destination")),
            password_enc=keyring.encrypt("K7M3P9Q2WX", aad=code_aad(code_id, "password")),
        )
        wire = encode(event, key=str(event.account_id), source="/selfcare-access/benchmark")
        records.append((wire.key, wire.value, wire.headers))
    return records


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(
    count: int, delay_ms: float, database_url: str | None, timeout_s: float, worker_count: int,
    primary_down: bool = False,
) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    prefix = new_prefix()
    try:
        await measure(bootstrap, prefix, count, delay_ms, database_url, timeout_s, worker_count,
                      primary_down)
    finally:  # a broker that keeps every run's topics slows down (and skews later runs)
        await remove_topics(bootstrap, prefix=prefix)


async def measure(bootstrap: str, prefix: str, count: int, delay_ms: float,
                  database_url: str | None, timeout_s: float, worker_count: int,
                  primary_down: bool) -> None:
    await create_topics(bootstrap, prefix)
    records = backlog(count)
    started = time.perf_counter()
    for i in range(0, count, 5000):
        await produce(bootstrap, prefix + CODE_ISSUED, records[i:i + 5000])
    print(f"backlog: {count} CodeIssued produced in {time.perf_counter() - started:.1f}s")

    floor_rate = await floor(bootstrap, prefix, count, delay_ms, timeout_s, worker_count)
    gateway = DevGateway(token=TOKEN, delay_s=delay_ms / 1000).start()
    dead_port = free_port()
    with tempfile.TemporaryDirectory(prefix="notifier-bench-") as tmp:
        workers = []
        for n in range(worker_count):
            port = free_port()
            extra = {"SMS_GATEWAY_URL": gateway.url, "SMS_GATEWAY_TOKEN": TOKEN,
                     "NOTIFIER_WEB_PORT": str(port), "BATCH_SIZE": "500", "LOG_LEVEL": "WARNING"}
            if database_url:
                extra["NOTIFIER_DATABASE_URL"] = database_url
            if primary_down:  # nothing listens at the primary's address: the fallback carries all
                extra.update(SMS_GATEWAY_URL=f"http://127.0.0.1:{dead_port}/sms",
                             SMS_FALLBACK_URL=gateway.url, SMS_FALLBACK_TOKEN=TOKEN)
            env = service_env(bootstrap=bootstrap, prefix=prefix, var_dir=Path(tmp) / f"w{n}", extra=extra)
            workers.append(Worker(module="services.notifier", env=env,
                                  log_path=Path(tmp) / f"worker{n}.log", web_port=port))
        try:
            run = await drive(workers, gateway, count, timeout_s)
        finally:
            gateway.stop()
    mode = "primary down, every send through the fallback" if primary_down else "primary gateway"
    print(f"{worker_count} worker(s) ready after {run.ready:.1f}s; "
          f"gateway answers after {delay_ms:.0f} ms; {mode}")
    print(f"sent {run.accepted}/{count} in {run.elapsed:.1f}s (from worker start, start-up included): "
          f"{run.accepted / run.elapsed:.0f} sends/s; after ready: {run.rate:.0f} sends/s")
    print(f"worker CPU: {run.cpu_s:.1f}s in all = {1000 * run.cpu_s / max(run.accepted, 1):.2f} ms per send "
          f"(consume + record + send + status), load average {os.getloadavg()[0]:.1f} at the end")
    print(f"gateway: calls={run.calls} distinct client_refs={run.distinct} duplicates={run.duplicates}")
    print(f"notifier / floor (after ready): {run.rate / floor_rate:.1%}")
    if run.accepted != count or run.distinct != count or run.duplicates:
        raise SystemExit("FAILED: gateway counts differ from the backlog")


@dataclass(frozen=True)
class Run:
    ready: float  # seconds from the start until every worker was ready
    elapsed: float  # seconds from the start until the gateway had every code (or the time-out)
    accepted: int
    cpu_s: float  # the workers' CPU seconds
    distinct: int
    duplicates: int
    calls: int

    @property
    def rate(self) -> float:
        """Sends/s once every worker was ready."""
        return self.accepted / max(self.elapsed - self.ready, 1e-9)


async def drive(workers: list[Worker], gateway: DevGateway, count: int, timeout_s: float) -> Run:
    """Starts ``workers`` together, waits until ``gateway`` has accepted ``count`` codes (or
    ``timeout_s``), stops them; what the gateway and the workers' CPU counted."""
    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(workers)) as pool:  # join the group together
            list(pool.map(lambda w: w.start(), workers))
        ready = time.perf_counter() - t0
        accepted = 0
        while accepted < count and time.perf_counter() - t0 < timeout_s:
            await asyncio.sleep(0.2)
            accepted = gateway.call(lambda s: len(s.accepted))
        elapsed = time.perf_counter() - t0
        cpu_s = sum(process_cpu_s(w.proc.pid) for w in workers if w.proc)
        distinct, duplicates, calls = gateway.call(
            lambda s: (len(s.calls), s.duplicates, sum(s.calls.values())))
    finally:
        for worker in workers:
            worker.stop()
    return Run(ready=ready, elapsed=elapsed, accepted=accepted, cpu_s=cpu_s, distinct=distinct,
               duplicates=duplicates, calls=calls)


async def floor(bootstrap: str, prefix: str, count: int, delay_ms: float, timeout_s: float,
                worker_count: int) -> float:
    """The floor's sends/s once ready (``benchmarks.notifier_floor``): as many workers, the same
    backlog (its own consumer group), a gateway of its own with the same delay."""
    gateway = DevGateway(token=TOKEN, delay_s=delay_ms / 1000).start()
    with tempfile.TemporaryDirectory(prefix="notifier-floor-") as tmp:
        workers = [
            Worker(module="benchmarks.notifier_floor", log_path=Path(tmp) / f"floor{n}.log",
                   web_port=free_port(),
                   env=service_env(bootstrap=bootstrap, prefix=prefix, var_dir=Path(tmp) / f"f{n}",
                                   extra={"SMS_GATEWAY_URL": gateway.url, "SMS_GATEWAY_TOKEN": TOKEN,
                                          "LOG_LEVEL": "WARNING"}))
            for n in range(worker_count)]
        try:
            run = await drive(workers, gateway, count, timeout_s)
        finally:
            gateway.stop()
    print(f"floor ({worker_count} no-op agent(s), one gateway call per record): "
          f"{run.accepted}/{count} sent, {run.rate:.0f} sends/s after ready; "
          f"CPU {1000 * run.cpu_s / max(run.accepted, 1):.2f} ms per send", flush=True)
    if run.accepted != count:
        raise SystemExit("FAILED: the floor did not send the whole backlog")
    return run.rate


def main() -> None:
    parser = argparse.ArgumentParser(description="notifier sends/s benchmark")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    parser.add_argument("--postgres-url", default=None,
                        help="a PostgreSQL server URL: a fresh database is created there and dropped")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (>1 needs PostgreSQL)")
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--primary-down", action="store_true",
                        help="the primary refuses connections; the local gateway is the fallback")
    args = parser.parse_args()
    if args.workers > 1 and not (args.postgres_url or str(args.database_url).startswith("postgresql")):
        parser.error("several workers share one table through PostgreSQL (FOR UPDATE SKIP LOCKED)")
    if args.postgres_url:
        with fresh_database(args.postgres_url) as url:
            asyncio.run(run(args.count, args.delay_ms, url, args.timeout_s, args.workers,
                            args.primary_down))
    else:
        asyncio.run(run(args.count, args.delay_ms, args.database_url, args.timeout_s, args.workers,
                        args.primary_down))


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    name = f"bench_notifier_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
