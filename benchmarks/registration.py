"""Registration throughput against the framework's own ceiling (not a test; loopback only).

    .venv/bin/python -m benchmarks.registration [--events 100000] [--postgres-url URL]
        [--runs N] [--skip-sqlite]

1. creates every topic under a fresh prefix and produces N distinct ``ContractLinked`` once;
2. (a) a plain aiokafka consumer reads them (``getmany`` + ``json.loads``);
3. (b) a no-op faust agent (same app factory, settings and heap settings as the service,
   ``take_events`` batches) reads them, in its own process;
4. (c) the registration worker ingests them into SQLite, then — its consumer group reset to the
   beginning — into a fresh PostgreSQL database; the rate runs from the worker being ready
   (partitions assigned) to the broker timestamp of the N-th ``AccountChanged`` (counted by the
   topic's end offsets; only each partition's last record is read). RSS is sampled
   every second over the worker and its linking process (peak = sum of their ``VmHWM``).

For (b) and (c) it also prints the CPU time per event (user + system, from /proc) of the
processes measured: the framework's own cost against the service's whole cost.

The PostgreSQL server URL comes from ``--postgres-url``, else ``TEST_POSTGRES_URL``, else
``python -m deploy.postgres url``; ``--skip-postgres`` leaves that run out, ``--skip-sqlite``
the SQLite one. ``--runs N`` repeats 3 and 4 N times — each round measures its own baseline right
before its runs, as this machine's speed drifts between minutes — and ends with each database's
ratios, their lowest and their median (the issue's target holds "over three runs").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from deploy.launch import free_port
from schemas.topics import ACCOUNT_CHANGED, CONTRACT_LINKED
from services.common.faust_private import refresh_metadata

ROOT = Path(__file__).resolve().parents[1]
BENCH_KEYS = {"SECRET_KEYS": "m9d4mNNbQnMmJrO0PjzIuR6Z4gk0Szz0yFSsmy9sX9A",
              "HASH_PEPPER": "bench-pepper-0123456789abcdef"}
PRODUCTS = ("interactive", "linear", "satellite")


def event(i: int) -> dict[str, Any]:
    """The i-th made-up link: distinct contract, mobile, personal account, email, passport."""
    at = datetime(2026, 11, 24, tzinfo=UTC) + timedelta(milliseconds=i)
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": at.isoformat().replace("+00:00", "Z"),
        "contract_number": f"BN-{i:08d}",
        "personal_account": f"{100000000000 + i}",
        "tv_product": PRODUCTS[i % 3],
        "subscriber": {
            "full_name": f"Бенчмарков Тест Тестович {i}",
            "mobile": f"+7 (916) {i // 10000:03d}-{(i // 100) % 100:02d}-{i % 100:02d}",
            "email": f"user{i}@example.ru",
            "passport": {"series": f"{4500 + i % 100}", "number": f"{100000 + i % 900000}"},
        },
        "mobile_active": True,
        "operator_id": "crm-bench",
    }


async def produce(bootstrap: str, topic: str, n: int) -> tuple[float, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=256 * 1024)
    await producer.start()
    started, size = time.perf_counter(), 0
    try:
        pending = []
        for i in range(n):
            value = json.dumps(event(i), ensure_ascii=False).encode()
            size += len(value)
            pending.append(await producer.send(topic, value=value, key=f"BN-{i:08d}".encode()))
            if len(pending) >= 20000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n / (time.perf_counter() - started), size // max(n, 1)


async def partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    for _ in range(50):
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        await refresh_metadata(consumer)
        await asyncio.sleep(0.1)
    raise TimeoutError(f"no metadata for {topic}")


async def plain_consumer(bootstrap: str, topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(await partitions(consumer, topic))
        await consumer.seek_to_beginning()
        started, count = time.perf_counter(), 0
        while count < n:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for record in records:
                    json.loads(record.value)
                count += len(records)
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


class Proc:
    """A worker process: started, waited for on /readyz, RSS sampled, stopped with SIGTERM."""

    def __init__(self, args: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.rss_mb: list[float] = []
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, *args], cwd=ROOT, env=env, stdout=log.open("ab"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 90) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited; see {self.log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return time.time()
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"worker not ready; see {self.log}")

    def pids(self) -> list[int]:
        """The worker and its child processes (registration's linking process)."""
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                todo.extend(int(c) for c in task.read_text().split())
        return found

    def sample(self) -> None:
        self.rss_mb.append(sum(_status_kb(p, "VmRSS") for p in self.pids()) / 1024)

    def peak_mb(self) -> float:
        """Sum of each process's own peak (``VmHWM``)."""
        return sum(_status_kb(p, "VmHWM") for p in self.pids()) / 1024

    def cpu_s(self) -> float:
        """User + system CPU seconds used so far by the worker and its children."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def _status_kb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return 0.0


def run_noop_agent(n: int, out: Path) -> None:
    """(b) in a child process: the service's app factory and settings, an agent that only counts."""
    from services.common.app import make_app
    from services.common.metrics import ServiceMetrics
    from services.common.process import tune_gc_for_workers
    from services.registration.settings import RegistrationSettings

    settings = RegistrationSettings.from_env()
    app = make_app(settings=settings, metrics=ServiceMetrics("bench_noop"),
                   app_id=f"{settings.topic_prefix}bench-noop-{uuid.uuid4().hex[:6]}")
    topic = app.topic(settings.topic(CONTRACT_LINKED), key_type=bytes, value_type=bytes, internal=False)
    seen = 0

    @app.agent(topic, name="bench.noop")
    async def noop(stream: Any) -> None:
        nonlocal seen
        async for events in stream.take_events(settings.batch_size, settings.batch_within_s):
            seen += len(events)
            if seen >= n:
                out.write_text(str(time.time()))  # noqa: ASYNC240 - once, at the end

    tune_gc_for_workers()  # as the services' workers do
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


def base_env(bootstrap: str, prefix: str, var_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
    env.update(BENCH_KEYS)
    env.update({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "TOPIC_PREFIX": prefix,
                "SELFCARE_VAR_DIR": str(var_dir), "REGISTRATION_WEB_PORT": str(port),
                "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"})
    return env


async def noop_faust(bootstrap: str, prefix: str, n: int, work: Path) -> tuple[float, float]:
    """(events/s, CPU seconds per event) of the no-op agent."""
    port, run = free_port(), uuid.uuid4().hex[:6]  # a file of its own per run (--runs)
    done = work / f"noop-{run}.done"
    proc = Proc(["-m", "benchmarks.registration", "--noop-agent", "--events", str(n), "--out", str(done)],
                base_env(bootstrap, prefix, work, port), port, work / f"noop-{run}.log")
    try:
        ready = proc.wait_ready()
        cpu_at_ready = proc.cpu_s()
        deadline = time.monotonic() + max(600, n / 500)
        while not done.exists():
            if time.monotonic() > deadline or proc.proc.poll() is not None:
                raise RuntimeError(f"no-op agent did not finish; see {proc.log}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.1)
        return n / (float(done.read_text()) - ready), (proc.cpu_s() - cpu_at_ready) / n
    finally:
        proc.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(await partitions(consumer, topic)))
    finally:
        await consumer.stop()


async def newest_timestamp(consumer: AIOKafkaConsumer, start: dict[TopicPartition, int],
                           end: dict[TopicPartition, int]) -> int:
    """The newest broker timestamp among the records between ``start`` and ``end``: that of the
    last record of each partition that received any (one producer appends to a partition in
    order, so its last record is its newest)."""
    grown = [tp for tp in start if end[tp] > start[tp]]
    consumer.assign(grown)
    newest = 0
    for tp in grown:
        consumer.seek(tp, end[tp] - 1)
        for _ in range(15):  # 30 s: the record is on the broker, its end offset says so
            records = (await consumer.getmany(tp, timeout_ms=2000, max_records=1)).get(tp, [])
            if records:
                newest = max(newest, records[0].timestamp)
                break
        else:
            raise TimeoutError(f"the last record of {tp} could not be read")
    return newest


async def reset_group(bootstrap: str, group: str, topic: str) -> None:
    """Point a stopped consumer group back at the beginning of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await partitions(consumer, topic)
        consumer.assign(parts)
        await consumer.commit({tp: 0 for tp in parts})
    finally:
        await consumer.stop()


async def registration(
    bootstrap: str, prefix: str, n: int, work: Path, db_url: str, label: str, progress: bool = False
) -> dict[str, Any]:
    out_topic = prefix + ACCOUNT_CHANGED
    start = await end_offsets(bootstrap, out_topic)
    port = free_port()
    env = base_env(bootstrap, prefix, work, port) | {"REGISTRATION_DATABASE_URL": db_url}
    proc = Proc(["-m", "services.registration", "worker", "--loglevel", "warn"], env, port,
                work / f"registration-{label}.log")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        ready = proc.wait_ready()
        cpu_at_ready = proc.cpu_s()
        await consumer.start()
        # the output is counted by its end offsets, not read: a reader of every record would
        # take CPU from the worker on this 2-core machine, which the no-op agent's run does not
        # share; only the last record of each partition is read, for its broker timestamp
        count, end, last_sample = 0, dict(start), 0.0
        deadline = time.monotonic() + max(900, n / 200)
        while count < n:
            if time.monotonic() > deadline or proc.proc.poll() is not None:
                raise RuntimeError(f"registration ({label}) stalled at {count}/{n}; see {proc.log}")
            await asyncio.sleep(0.25)
            end = dict(await consumer.end_offsets(list(start)))
            count = sum(end[tp] - start[tp] for tp in start)
            if time.monotonic() - last_sample >= 1.0:
                if progress:
                    print(f"    {time.time() - ready:5.1f} s: {count:,} AccountChanged", flush=True)
                proc.sample()
                last_sample = time.monotonic()
        proc.sample()
        newest_ms = await newest_timestamp(consumer, start, end)
        return {"rate": n / (newest_ms / 1000 - ready), "peak_mb": proc.peak_mb(),
                "rss_mb": proc.rss_mb, "cpu_per_event": (proc.cpu_s() - cpu_at_ready) / n}
    finally:
        await consumer.stop()
        proc.stop()


def postgres_server(arg: str | None) -> str | None:
    if arg:
        return arg
    if os.environ.get("TEST_POSTGRES_URL"):
        return os.environ["TEST_POSTGRES_URL"]
    found = subprocess.run([sys.executable, "-m", "deploy.postgres", "url"], cwd=ROOT,
                           capture_output=True, text=True, check=False)
    return found.stdout.strip() or None


def fresh_database(server_url: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text

    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name, name


def drop_database(server_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def flat(samples: list[float]) -> str:
    if not samples:
        return "-"
    picks = [samples[int(q * (len(samples) - 1))] for q in (0.1, 0.25, 0.5, 0.75, 1.0)]
    return " / ".join(f"{s:.0f}" for s in picks)


async def main(args: argparse.Namespace) -> None:
    from deploy import topics as topic_admin

    prefix = f"bench{uuid.uuid4().hex[:8]}."
    try:
        await measure(args, prefix)
    finally:  # a broker that keeps every run's topics slows down (and skews later runs)
        await topic_admin.remove(args.bootstrap, prefix=prefix)


async def measure(args: argparse.Namespace, prefix: str) -> None:
    from deploy import topics as topic_admin

    n, bootstrap = args.events, args.bootstrap
    work = Path(tempfile.mkdtemp(prefix="bench-registration-"))
    await topic_admin.apply(bootstrap, prefix=prefix, replication_factor=1)
    source = prefix + CONTRACT_LINKED
    print(f"N = {n} ContractLinked on {source} (4 partitions); work dir {work}", flush=True)
    produced, size = await produce(bootstrap, source, n)
    print(f"produced once: {produced:,.0f} events/s, {size} bytes/record", flush=True)
    plain = await plain_consumer(bootstrap, source, n)
    print(f"(a) plain aiokafka consumer        {plain:>9,.0f} events/s", flush=True)
    server = None if args.skip_postgres else postgres_server(args.postgres_url)
    group = f"{prefix}selfcare-registration"
    ratios: dict[str, list[float]] = {}
    consumed = False  # the registration group has read the topic once: reset it before a run
    for round_ in range(1, args.runs + 1):
        if args.runs > 1:
            print(f"round {round_} of {args.runs}", flush=True)
        # the baseline is measured again right before each round's runs (the machine drifts)
        noop, noop_cpu = await noop_faust(bootstrap, prefix, n, work)
        print(f"(b) no-op faust agent (take_events) {noop:>8,.0f} events/s   "
              f"(b)/(a) = {noop / plain:.1%}   CPU {noop_cpu * 1e6:.0f} µs/event", flush=True)
        runs: list[tuple[str, str, str | None]] = []
        if not args.skip_sqlite:
            runs.append(("sqlite", f"sqlite:///{work / f'registration-{round_}.db'}", None))
        if server:
            url, name = fresh_database(server)
            runs.append(("postgresql", url, name))
        for label, url, dbname in runs:
            if consumed:
                await reset_group(bootstrap, group, source)
            try:
                result = await registration(bootstrap, prefix, n, work, url, label, args.progress)
                consumed = True
            finally:
                if dbname and server:
                    drop_database(server, dbname)
            ratios.setdefault(label, []).append(result["rate"] / noop)
            print(f"(c) registration → {label:<10}     {result['rate']:>9,.0f} events/s   "
                  f"(c)/(b) = {result['rate'] / noop:.1%}   (c)/(a) = {result['rate'] / plain:.1%}   "
                  f"peak RSS {result['peak_mb']:.0f} MB; RSS at 10/25/50/75/100% of the run: "
                  f"{flat(result['rss_mb'])} MB", flush=True)
            print(f"    CPU {result['cpu_per_event'] * 1e6:.0f} µs/event over the worker and its "
                  f"linking process = {result['cpu_per_event'] / noop_cpu:.2f} × the no-op agent's",
                  flush=True)
    if not server:
        print("(c) registration → postgresql: skipped (no server URL)")
    if args.runs > 1:
        for label, values in ratios.items():
            print(f"(c)/(b) on {label} over {len(values)} rounds: "
                  f"{' / '.join(f'{v:.1%}' for v in values)}; lowest {min(values):.1%}, "
                  f"median {statistics.median(values):.1%}", flush=True)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--runs", type=int, default=1,
                        help="rounds, each the no-op agent then registration (one figure per round)")
    parser.add_argument("--progress", action="store_true",
                        help="print the AccountChanged count every second of each registration run")
    parser.add_argument("--noop-agent", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.noop_agent:
        run_noop_agent(args.events, args.out)
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
